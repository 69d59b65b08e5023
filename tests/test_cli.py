"""The command line, called in-process (and once as a real subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from entropymap.cli import main


def test_map_sample(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["map", "--sample", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "entropy.nii.gz" in printed and "reference" in printed
    assert (out / "fusion.png").exists() and (out / "statistics.csv").exists()


def test_help_explains_units_and_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["map", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in ("(default: 5,", "mm", "(default: 1.0)", "(default: 10)", "--reference-sphere X Y Z R",
                  "--overwrite", "voxel", "(default: 2d)"):
        assert words in text


@pytest.mark.parametrize(
    "args, words",
    [
        (["map", "missing.nii.gz", "-o", "OUT"], "missing.nii.gz"),
        (["map", "--sample", "--kernel", "4", "-o", "OUT"], "odd"),
        (["map", "--sample", "--bin-width", "0", "-o", "OUT"], "bin width"),
        (["map", "-o", "OUT"], "IMAGE"),
        (["map", "--sample", "--kernel", "3", "3", "-o", "OUT"], "three"),
        (["map", "--sample", "--reference-sphere", "0", "0", "1e6", "1", "-o", "OUT"], "sphere"),
    ],
)
def test_bad_input_exits_nonzero_with_one_message(tmp_path, capsys, args, words):
    args = [a.replace("OUT", str(tmp_path / "out")) for a in args]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("entropymap: error:") and words in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unreadable_image_and_masks(tmp_path, capsys):
    from entropymap import io

    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"this is not an image")
    assert main(["map", str(bad), "-o", str(tmp_path / "o1")]) == 1
    assert "bad.nii.gz" in capsys.readouterr().err
    # A mask on another grid, and an empty mask.
    geo = io.Geometry((6, 10, 12), spacing=(2.0, 1.0, 1.0))
    img = tmp_path / "img.nii.gz"
    io.write_image(img, np.random.default_rng(0).normal(50, 10, (6, 10, 12)).astype(np.float32), geo)
    other = tmp_path / "other.nii.gz"
    io.write_image(other, np.ones((6, 10, 13), np.uint8), io.Geometry((6, 10, 13)))
    assert main(["map", str(img), "--tumor", str(other), "-o", str(tmp_path / "o2")]) == 1
    assert "--resample-masks" in capsys.readouterr().err
    empty = tmp_path / "empty.nii.gz"
    io.write_image(empty, np.zeros((6, 10, 12), np.uint8), geo)
    assert main(["map", str(img), "--tumor", str(empty), "-o", str(tmp_path / "o3")]) == 1
    assert "empty" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in ("o1", "o2", "o3"))


def test_existing_output_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    assert main(["map", "--sample", "--kernel", "3", "-q", "-o", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["map", "--sample", "--kernel", "3", "-q", "--overwrite", "-o", str(out)]) == 0


def test_python_dash_m_runs(tmp_path):
    res = subprocess.run([sys.executable, "-m", "entropymap", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("entropymap ")
    res = subprocess.run([sys.executable, "-m", "entropymap", "map", "nope.nii", "-o", str(tmp_path / "x")],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "Traceback" not in res.stderr and "nope.nii" in res.stderr


def test_messages_that_point_to_the_fix(tmp_path, capsys):
    from entropymap.sample import sample_case

    case = sample_case()
    # A label image given as the tumor without its label: the tumor covers the liver.
    assert main(["map", str(case.image), "--tumor", str(case.labels), "--liver", str(case.labels),
                 "-q", "-o", str(tmp_path / "a")]) == 1
    assert "--tumor-label" in capsys.readouterr().err
    # A sphere outside the image: the message gives the image's extent.
    assert main(["map", "--sample", "--reference-sphere", "0", "0", "1000", "5", "-q", "-o", str(tmp_path / "b")]) == 1
    assert "z 0.0 .. 127.0" in capsys.readouterr().err


def test_output_folder_is_readable_by_others(tmp_path):
    out = tmp_path / "o"
    assert main(["map", "--sample", "--kernel", "3", "-q", "-o", str(out)]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == (0o777 & ~umask)


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--kernel", "3", "--kernel-mm", "5"], "not both"),
        (["--bin-count", "8", "--bin-anchor", "3"], "no effect with --bin-count"),
        (["--tumor-label", "0"], "background"),
        (["--reference-label", "2"], "without --reference"),
        (["--crop-margin", "nan"], "finite"),
        (["--bin-anchor", "inf"], "finite"),
        (["--reference-sphere", "60", "60", "60", "5", "--reference-margin", "3"], "no effect here"),
        (["--bin-width", "1e-300"], "integer range"),
    ],
)
def test_options_that_would_be_ignored_or_overflow_are_refused(tmp_path, capsys, extra, words):
    assert main(["map", "--sample", *extra, "-q", "-o", str(tmp_path / "o")]) == 1
    assert words in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_sample_respects_a_given_tumor_label(tmp_path):
    import json

    assert main(["map", "--sample", "--tumor-label", "1", "--kernel", "3", "-q", "-o", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "run.json").read_text())["labels"]["tumor"] == 1


def test_sigterm_cleans_up(tmp_path):
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "entropymap", "map", "--sample", "--kernel", "15", "-q",
                             "-o", str(tmp_path / "out")], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not [p for p in tmp_path.iterdir() if ".partial-" in p.name]:
        time.sleep(0.05)  # wait until the run has made its temporary folder
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "terminated" in err
    assert list(tmp_path.iterdir()) == []
