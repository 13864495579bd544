"""The serial bridge: a dev board (or firmware-sim on a pseudo-terminal) as a satellite's compute payload."""
