"""Trigger that waits, in the triggerer, until what a run sent to AEP has landed; and the landing rules it applies.

The rules are pure functions shared with :class:`~airflow_provider_capillary.sensors.aep.AEPIngestionSensor`,
so the sensor's synchronous check (poke mode, or the one check before deferring) and this trigger decide alike:

* Every Catalog batch of the watched datasets created after ``since`` counts (aep-api.md §4.3). Streamed
  records appear as system-created batches; Batch Ingestion batches are the ones the run created.
* ``success``/``active`` batches have landed; their ``recordCount`` (and ``failedRecordCount``) are summed.
* ``failed``/``failure`` batches, and those ``stalled`` (retries exhausted), ``aborted`` or ``abandoned`` (never
  completed), fail the wait at once, with each batch's ``errors[]`` (code and description).
* ``inactive``, ``deleted``, ``retained`` and ``archived`` batches are neither counted nor waited for; every
  other status (``loading``, ``loaded``, ``staging``, ``processing``, ``queued``, ``retrying``, ``staged``, or one
  AEP adds later) is still in progress.
* Without ``expected_records`` a dataset has landed when it has at least one successful batch and none in
  progress. With it, once the successful batches' ``recordCount`` adds up to the expected number (batches still
  in progress then are left alone: they may belong to another producer).
* Optionally a sample of identities must then be found by the Profile Access API (aep-api.md §7). A 404 means
  "not merged yet": the wait goes on, until the timeout. A 403 means the org cannot use that API (it needs
  Real-Time CDP Ultimate and a permission): the look-up is skipped with a warning and the result says
  ``"available": false``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_capillary.exceptions import AEPAuthError
from airflow_provider_capillary.hooks.aep import AEPAsyncHook, AEPHook

SUCCESS_STATUSES = frozenset({"success", "active"})
"""Batch statuses meaning the batch landed (AEP uses the two interchangeably)."""

FAILED_STATUSES = frozenset({"failed", "failure", "stalled", "aborted", "abandoned"})
"""Batch statuses meaning the batch's records did not land and will not without action."""

IGNORED_STATUSES = frozenset({"inactive", "deleted", "retained", "archived"})
"""Batch statuses neither counted nor waited for (reverted, expired or housekeeping states)."""

_MAX_ERRORS_SHOWN = 5
_MAX_BATCHES_SHOWN = 5
_MAX_TEXT = 300

LandingState = Literal["success", "pending", "failed"]


class DatasetLanding(TypedDict):
    """What landed in one dataset: successful batches, their records and their failed records."""

    batches: int
    records: int
    failed_records: int


class ProfileLookup(TypedDict):
    """Outcome of the Profile look-up of the sampled identities."""

    sampled: int
    found: int
    available: bool


class IngestionResult(TypedDict, total=False):
    """The sensor's return value (XCom) and the ``result`` of a success event."""

    since: int
    records: int
    datasets: dict[str, DatasetLanding]
    profiles: ProfileLookup


@dataclass
class LandingCheck:
    """One evaluation of the landing rules.

    :param state: ``success`` (everything landed), ``pending`` (not yet) or ``failed`` (a batch failed).
    :param message: Human-readable explanation (what is missing, or the failed batches and their errors).
    :param result: Counts per dataset, and the profile look-up outcome once it ran.
    """

    state: LandingState
    message: str
    result: IngestionResult = field(default_factory=lambda: IngestionResult())


def _short(text: Any) -> str:
    value = " ".join(str(text).split())
    return value if len(value) <= _MAX_TEXT else value[: _MAX_TEXT - 3] + "..."


def describe_failed_batch(dataset_id: str, batch: Mapping[str, Any]) -> str:
    """One line naming a failed batch, its status, failed record count and first errors (code: description)."""
    errors = [error for error in batch.get("errors") or [] if isinstance(error, Mapping)]
    shown = "; ".join(
        f"{error.get('code') or 'no code'}: {_short(error.get('description') or error.get('message') or '')}"
        for error in errors[:_MAX_ERRORS_SHOWN]
    )
    if len(errors) > _MAX_ERRORS_SHOWN:
        shown += f"; and {len(errors) - _MAX_ERRORS_SHOWN} more"
    failed_records = batch.get("failedRecordCount")
    counts = f", {failed_records} failed records" if failed_records else ""
    return (
        f"dataset {dataset_id} batch {batch.get('id')} is {batch.get('status')}{counts}: "
        f"{shown or 'AEP gave no errors'}"
    )


def expected_for(expected_records: int | Mapping[str, int] | None, dataset_id: str) -> int | None:
    """The expected record count of one dataset when ``expected_records`` is given per dataset."""
    if isinstance(expected_records, Mapping):
        value = expected_records.get(dataset_id)
        return None if value is None else int(value)
    return None


def assess_batches(
    batches_by_dataset: Mapping[str, Sequence[Mapping[str, Any]]],
    expected_records: int | Mapping[str, int] | None = None,
    *,
    since: int,
) -> LandingCheck:
    """Apply the landing rules (see the module docstring) to the batches listed for each dataset.

    :param batches_by_dataset: Catalog batches created after ``since``, per dataset id.
    :param expected_records: Records that must have landed: a total over all datasets, or a count per dataset
        id (datasets not named then only need a successful batch). ``None``: any successful batch will do.
    :param since: The epoch-milliseconds instant the batches were listed after (reported in the result).
    :return: ``failed`` if any batch failed, else ``success`` or ``pending``, with counts per dataset.
    """
    datasets: dict[str, DatasetLanding] = {}
    failures: list[str] = []
    waiting: list[str] = []
    for dataset_id, batches in batches_by_dataset.items():
        landed = DatasetLanding(batches=0, records=0, failed_records=0)
        in_progress: list[str] = []
        for batch in batches:
            status = str(batch.get("status") or "").lower()
            if status in SUCCESS_STATUSES:
                landed["batches"] += 1
                landed["records"] += int(batch.get("recordCount") or 0)
                landed["failed_records"] += int(batch.get("failedRecordCount") or 0)
            elif status in FAILED_STATUSES:
                failures.append(describe_failed_batch(dataset_id, batch))
            elif status not in IGNORED_STATUSES:
                in_progress.append(f"{batch.get('id')} ({status or 'no status'})")
        datasets[dataset_id] = landed
        if isinstance(expected_records, int):
            continue  # judged on the total below
        wanted = expected_for(expected_records, dataset_id)
        if wanted is not None:
            if landed["records"] < wanted:
                waiting.append(
                    f"dataset {dataset_id}: {landed['records']} of {wanted} records landed"
                    + (f", {len(in_progress)} batches in progress" if in_progress else "")
                )
        elif in_progress:
            shown = ", ".join(in_progress[:_MAX_BATCHES_SHOWN])
            more = f" and {len(in_progress) - _MAX_BATCHES_SHOWN} more" if len(in_progress) > _MAX_BATCHES_SHOWN else ""
            waiting.append(f"dataset {dataset_id}: batches in progress: {shown}{more}")
        elif landed["batches"] == 0:
            waiting.append(f"dataset {dataset_id}: no successful batch yet")
    total = sum(landed["records"] for landed in datasets.values())
    result = IngestionResult(since=since, records=total, datasets=datasets)
    if failures:
        return LandingCheck("failed", f"{len(failures)} AEP batch(es) failed: " + " | ".join(failures), result)
    if isinstance(expected_records, int) and total < expected_records:
        waiting.insert(0, f"{total} of {expected_records} expected records landed")
    if waiting:
        return LandingCheck("pending", "Waiting for AEP: " + "; ".join(waiting), result)
    return LandingCheck("success", f"{total} records landed in {len(datasets)} dataset(s)", result)


def profile_outcome(check: LandingCheck, sampled: int, missing: Sequence[int], *, available: bool) -> LandingCheck:
    """Fold the Profile look-up of the sampled identities into a successful batch check.

    :param check: The (successful) batch check.
    :param sampled: Number of sampled identities.
    :param missing: Positions (in ``sample_identities``) of identities Profile did not find yet.
    :param available: False when AEP refused the Profile Access API (403): the look-up was skipped.
    """
    result = IngestionResult(**check.result)
    found = sampled - len(missing) if available else 0
    result["profiles"] = ProfileLookup(sampled=sampled, found=found, available=available)
    if not available:
        return LandingCheck(
            "success",
            f"{check.message}; Profile look-up skipped: AEP refused the Profile Access API (HTTP 403)",
            result,
        )
    if missing:
        positions = ", ".join(f"[{index}]" for index in missing[:10])
        return LandingCheck(
            "pending",
            f"Waiting for AEP Profile: {len(missing)} of {sampled} sampled identities not found yet "
            f"(sample_identities{positions})",
            result,
        )
    return LandingCheck("success", f"{check.message}; all {sampled} sampled identities found in Profile", result)


class AEPIngestionTrigger(BaseTrigger):
    """Poll AEP Catalog (and optionally Profile) until a run's data has landed, failed, or time is up.

    Yields one event: ``{"status": "success", "message", "dataset_ids", "result"}`` (``result`` as the sensor
    returns it), ``{"status": "failed", ...}`` when a batch failed (its errors in the message),
    ``{"status": "timeout", ...}`` past ``end_time`` (the message says what was still missing), or
    ``{"status": "error", ...}`` when AEP could not be asked (the typed error's message; never credentials).

    :param dataset_ids: Catalog dataset ids to watch.
    :param since: Only batches created after this epoch-milliseconds instant count.
    :param end_time: Wall-clock deadline (``time.time()`` seconds) after which a ``timeout`` event is sent.
    :param expected_records: Records that must land: a total, or a count per dataset id. Default: none.
    :param sample_identities: ``{"id": ..., "namespace": ...}`` identities the Profile look-up must find.
        Default: none.
    :param aep_conn_id: Connection of type ``adobe_experience_platform``. Default ``aep_default``.
    :param poll_interval: Seconds between polls. Default 60.
    """

    def __init__(
        self,
        *,
        dataset_ids: Sequence[str],
        since: int,
        end_time: float,
        expected_records: int | Mapping[str, int] | None = None,
        sample_identities: Sequence[Mapping[str, str]] | None = None,
        aep_conn_id: str = AEPHook.default_conn_name,
        poll_interval: float = 60.0,
    ) -> None:
        super().__init__()
        self.dataset_ids = list(dataset_ids)
        self.since = since
        self.end_time = end_time
        self.expected_records = dict(expected_records) if isinstance(expected_records, Mapping) else expected_records
        self.sample_identities = [dict(identity) for identity in sample_identities or ()]
        self.aep_conn_id = aep_conn_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "dataset_ids": self.dataset_ids,
                "since": self.since,
                "end_time": self.end_time,
                "expected_records": self.expected_records,
                "sample_identities": self.sample_identities,
                "aep_conn_id": self.aep_conn_id,
                "poll_interval": self.poll_interval,
            },
        )

    def _event(self, status: str, message: str, result: IngestionResult | None = None) -> TriggerEvent:
        payload: dict[str, Any] = {"status": status, "message": message, "dataset_ids": self.dataset_ids}
        if result is not None:
            payload["result"] = dict(result)
        return TriggerEvent(payload)

    async def _check(self, hook: AEPAsyncHook, found: set[int]) -> LandingCheck:
        batches = {
            dataset_id: await hook.list_batches(dataset_id, created_after=self.since) for dataset_id in self.dataset_ids
        }
        check = assess_batches(batches, self.expected_records, since=self.since)
        if check.state != "success" or not self.sample_identities:
            return check
        missing: list[int] = []
        for index, identity in enumerate(self.sample_identities):
            if index in found:
                continue
            try:
                profile = await hook.lookup_profile(identity["id"], identity["namespace"])
            except AEPAuthError as error:
                if error.status != 403:
                    raise
                self.log.warning("AEP refused the Profile Access API (HTTP 403); skipping the Profile look-up")
                return profile_outcome(check, len(self.sample_identities), [], available=False)
            if profile is None:
                missing.append(index)
            else:
                found.add(index)
        return profile_outcome(check, len(self.sample_identities), missing, available=True)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            async with AEPAsyncHook(self.aep_conn_id) as hook:
                found: set[int] = set()
                while True:
                    check = await self._check(hook, found)
                    if check.state != "pending":
                        yield self._event(check.state, check.message, check.result)
                        return
                    if time.time() >= self.end_time:
                        yield self._event("timeout", f"Timed out. {check.message}", check.result)
                        return
                    self.log.info("%s; next check in %s s", check.message, self.poll_interval)
                    await asyncio.sleep(self.poll_interval)
        except Exception as error:
            yield self._event("error", f"{type(error).__name__}: {error}")
