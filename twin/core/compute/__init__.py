"""Compute jobs on the constellation: job kinds and table, seeded demand, placement policies.

Pure numpy, no clock and no I/O: the engine (or a benchmark) hands the scheduler the fleet's state
as arrays each tick and takes back each device's load. Model and figures:
docs/physics.md#compute-jobs.
"""

from twin.core.compute.demand import DemandGenerator, DemandParams, KindDemand, zipf_weights
from twin.core.compute.jobs import JobBatch, JobKind, JobReason, JobState, JobTable, Ledger
from twin.core.compute.outlook import Outlook, eclipse_outlook, region_outlook
from twin.core.compute.placement import POLICIES, FleetView, PlacementParams, Scheduler, StepResult

__all__ = ["POLICIES", "DemandGenerator", "DemandParams", "FleetView", "JobBatch", "JobKind", "JobReason", "JobState",
           "JobTable", "KindDemand", "Ledger", "Outlook", "PlacementParams", "Scheduler", "StepResult",
           "eclipse_outlook", "region_outlook", "zipf_weights"]
