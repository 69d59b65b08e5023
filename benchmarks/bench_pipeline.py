"""The whole main job on the bundled sample: wall time per step and peak memory.

    python -m pytest benchmarks/bench_pipeline.py -s
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def test_main_job_on_sample(benchmark, tmp_path):
    from entropymap.pipeline import CaseInputs, MapParams, run_case
    from entropymap.sample import sample_case

    case = sample_case()
    inputs = CaseInputs(image=case.image, tumor=case.labels, tumor_label=2, liver=case.labels)
    counter = iter(range(100))

    def run():
        return run_case(inputs, tmp_path / f"o{next(counter)}", MapParams())

    record = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    t = record["timings_s"]
    benchmark.extra_info.update(t)
    print("\nstep timings (s):", json.dumps(t))
    kernel_share = t["local entropy"] / t["total"]
    print(f"kernel share of the job: {kernel_share:.0%}")


def test_main_job_peak_memory(tmp_path):
    """Peak RSS of `python -m entropymap map --sample` in a fresh process."""
    code = textwrap.dedent(
        f"""
        import resource, sys
        from entropymap.cli import main
        rc = main(["map", "--sample", "-q", "-o", r"{tmp_path / 'mem'}"])
        print(rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        """
    )
    res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    rc, kib = (int(v) for v in res.stdout.split())
    assert rc == 0
    print(f"\npeak RSS of the whole job on the 128^3 sample: {kib / 1024:.0f} MiB")
