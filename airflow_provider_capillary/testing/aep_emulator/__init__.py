"""A local Adobe Experience Platform emulator (IMS, platform APIs and streaming ingestion on one port)."""

from __future__ import annotations

from airflow_provider_capillary.testing.aep_emulator.client import EmulatorClient, StreamingTarget
from airflow_provider_capillary.testing.aep_emulator.emulator import XDM_ROOT_ENV, AEPEmulator
from airflow_provider_capillary.testing.aep_emulator.faults import Fault, FaultPlan

__all__ = ["XDM_ROOT_ENV", "AEPEmulator", "EmulatorClient", "Fault", "FaultPlan", "StreamingTarget"]
