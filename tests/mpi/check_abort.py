"""A CLI job whose rank 1 raises while rank 0 waits in a collective must end quickly."""

import argparse
import time

from hpcml import cli


def handler(args, comm):
    if comm.rank == 1:
        raise RuntimeError("rank 1 fails alone")
    comm.barrier()          # rank 0 would wait here forever without the abort hook
    time.sleep(60)


args = argparse.Namespace(handler=handler, log_level="info", json=False)
raise SystemExit(cli._run_job(args))
