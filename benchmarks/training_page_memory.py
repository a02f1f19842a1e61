"""Wall time and peak memory of one subject's training page at full size, step by step.

The training page loads the subject, trains (or loads) its generators and scores the
cross-attention model card on the validation concepts. At THINGS-MEG's size that page once
ran a 23 GB machine out of memory; this script does the same work in one process and
records after each step its seconds, the process's peak resident memory so far
(``ru_maxrss``) and the least available system memory seen (sampled every 0.5 s). Should
available memory fall under ``--min-available-gb``, it writes what it has and exits 3
instead of letting the system kill the machine's other work.

    .venv/bin/python benchmarks/training_page_memory.py --dataset things-meg --root R \
        --subject 1 --profile rehearsal --workdir W \
        --output benchmarks/results/training-page-memory-things-meg.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time
from pathlib import Path

import psutil

from analysis.experiment import SubjectRun
from analysis.files import atomic_write_text
from analysis.provenance import package_versions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="things-meg")
    parser.add_argument("--root", required=True)
    parser.add_argument("--subject", type=int, default=1)
    parser.add_argument("--profile", default="rehearsal")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--min-available-gb", type=float, default=1.5)
    args = parser.parse_args()

    record = {"dataset": args.dataset, "subject": args.subject, "profile": args.profile,
              "machine": {"cpus": os.cpu_count(),
                          "memory_gb": round(psutil.virtual_memory().total / 1e9, 1)},
              "versions": package_versions(), "steps": [], "status": "running"}
    least = [psutil.virtual_memory().available]
    done = threading.Event()

    def write() -> None:
        record["least_available_gb"] = round(least[0] / 1e9, 2)
        atomic_write_text(Path(args.output), json.dumps(record, indent=1) + "\n")

    def watch() -> None:
        while not done.wait(0.5):
            least[0] = min(least[0], psutil.virtual_memory().available)
            if least[0] < args.min_available_gb * 1e9:
                record["status"] = (f"stopped: available memory under {args.min_available_gb} "
                                    f"GB during step {len(record['steps']) + 1}")
                write()
                os._exit(3)

    threading.Thread(target=watch, daemon=True).start()
    run = SubjectRun(args.dataset, args.root, args.subject, args.profile, args.workdir,
                     progress=False)

    def step(name: str, work) -> None:
        start = time.perf_counter()
        work()
        record["steps"].append({
            "step": name, "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_gb_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
            "available_gb_now": round(psutil.virtual_memory().available / 1e9, 2)})
        write()
        print(record["steps"][-1], flush=True)

    step("load the recording, split off the validation concepts", lambda: run.dataset)
    step("image features (cached)", lambda: run.features)
    for conditioning in run.conditionings:
        step(f"train or load {conditioning}", lambda c=conditioning: run.model(c))
    step("model card, validated", lambda: run.model_card("cross_attention", validate=True))
    done.set()
    record["status"] = "complete"
    write()


if __name__ == "__main__":
    main()
