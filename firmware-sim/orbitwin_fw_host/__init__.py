"""Host runner for Orbitwin firmware-sim: the real firmware over pseudo-terminals."""
from orbitwin_fw_host.sim import SimBoard, SimHandle, PtyPort, start_sims, stop_sims

__all__ = ["SimBoard", "SimHandle", "PtyPort", "start_sims", "stop_sims"]
