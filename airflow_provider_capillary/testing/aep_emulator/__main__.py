"""Command line: ``python -m airflow_provider_capillary.testing.aep_emulator --port 8765 ...``."""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import threading
from typing import TYPE_CHECKING

from airflow_provider_capillary.testing.aep_emulator.emulator import XDM_ROOT_ENV, AEPEmulator
from airflow_provider_capillary.testing.aep_emulator.faults import FaultPlan

if TYPE_CHECKING:
    from collections.abc import Sequence


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    Parse the command line.

    :param argv: arguments without the program name; ``sys.argv[1:]`` when ``None``.
    """
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_capillary.testing.aep_emulator",
        description="Serve a local Adobe Experience Platform (IMS, platform APIs, DCS) until SIGINT/SIGTERM.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to bind; 0 picks a free one (default 8765)")
    parser.add_argument("--xdm-root", help=f"official XDM definitions folder (default ${XDM_ROOT_ENV}, else built-in)")
    parser.add_argument("--client-id", default="emulator-client-id", help="OAuth client id / x-api-key")
    parser.add_argument("--client-secret", default="emulator-client-secret", help="OAuth client secret")
    parser.add_argument("--org-id", default="EMULATORORG@AdobeOrg", help="IMS org id")
    parser.add_argument("--tenant-id", default="acmecorp", help="Schema Registry tenant id")
    parser.add_argument("--sandbox", action="append", help="sandbox name (repeatable; default prod and dev)")
    parser.add_argument("--token-lifetime", type=int, default=86399, help="token lifetime in seconds")
    parser.add_argument("--landing-delay", type=float, default=0.0, help="seconds before records land in batches")
    parser.add_argument("--journal", action="store_true", help="keep a journal of requests (secrets redacted)")
    parser.add_argument(
        "--async-validation",
        action="store_true",
        help="multi-message requests accept schema-invalid records and fail them later in Catalog batches",
    )
    parser.add_argument(
        "--allow-unknown-fields", action="store_true", help="accept records with fields their schema does not define"
    )
    faults = parser.add_argument_group("fault injection (random faults are reproducible for a given --seed)")
    faults.add_argument("--seed", type=int, help="random seed")
    faults.add_argument("--fault-429", type=float, default=0.0, help="probability of 429 with Retry-After")
    faults.add_argument("--fault-5xx", type=float, default=0.0, help="probability of 500/503")
    faults.add_argument("--fault-drop", type=float, default=0.0, help="probability of a dropped connection")
    faults.add_argument(
        "--fault-partial", type=float, default=0.0, help="probability per message of a transient 207 failure"
    )
    faults.add_argument("--fault-batch", type=float, default=0.0, help="probability a Batch Ingestion batch fails")
    faults.add_argument("--latency-ms", type=float, default=0.0, help="milliseconds added to every request")
    faults.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds sent with 429/503")
    faults.add_argument("--revoke-after", type=int, help="revoke all tokens after this many requests")
    faults.add_argument("--fault-ims", action="store_true", help="inject random faults into IMS too")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the emulator until SIGINT or SIGTERM; print its URL and connection JSON first.

    :param argv: arguments without the program name.
    """
    args = parse_args(argv)
    plan = FaultPlan(
        seed=args.seed,
        rate_429=args.fault_429,
        rate_5xx=args.fault_5xx,
        drop_rate=args.fault_drop,
        partial_rate=args.fault_partial,
        batch_failure_rate=args.fault_batch,
        latency_ms=args.latency_ms,
        retry_after=args.retry_after,
        revoke_after=args.revoke_after,
        include_ims=args.fault_ims,
    )
    emulator = AEPEmulator(
        host=args.host,
        port=args.port,
        client_id=args.client_id,
        client_secret=args.client_secret,
        org_id=args.org_id,
        sandboxes=tuple(args.sandbox or ("prod", "dev")),
        tenant_id=args.tenant_id,
        token_lifetime=args.token_lifetime,
        xdm_root=args.xdm_root,
        faults=plan,
        journal=args.journal,
        landing_delay=args.landing_delay,
        reject_unknown_fields=not args.allow_unknown_fields,
        async_validation=args.async_validation,
    )
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with emulator:
        # A dedicated process: keep the loaded XDM definitions out of garbage collection and collect
        # less often; each multi-message request allocates ~10^5 short-lived containers.
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        print(f"AEP emulator listening on {emulator.url}", flush=True)
        print(f"AIRFLOW_CONN_AEP_DEFAULT='{emulator.connection_json()}'", flush=True)
        stopped.wait()
    print("AEP emulator stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
