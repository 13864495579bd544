"""Host runner for Orbitwin firmware-sim: the real firmware over pseudo-terminals."""
from orbitwin_fw_host.launch import BoardHandle, start_sims, stop_sims
from orbitwin_fw_host.procs import ProcSimHandle
from orbitwin_fw_host.sim import PtyPort, SimBoard, SimHandle

__all__ = ["BoardHandle", "ProcSimHandle", "PtyPort", "SimBoard", "SimHandle", "start_sims", "stop_sims"]
