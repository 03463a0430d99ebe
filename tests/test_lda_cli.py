"""The ``hpcml lda`` and ``hpcml data corpus`` commands under real mpiexec."""

import json
import os
import sys

import h5py
import numpy as np
import pytest

from conftest import mpirun

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

pytestmark = pytest.mark.mpi


def lda_cli(ranks, *args, timeout=180):
    return mpirun(ranks, [sys.executable, "-m", "hpcml", *map(str, args)], timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lda")
    path = folder / "corpus.h5"
    out = lda_cli(1, "data", "corpus", "synthetic", "--docs", 241, "--words", 150, "--topics", 4,
                  "--doc-length", 60, "--alpha", 0.2, "--beta", 0.05, "--seed", 3,
                  "--length-spread", 1.0, "--output", path, "--json")
    assert out.returncode == 0, out
    return folder, path


def _train(ranks, folder, name, *extra):
    out = lda_cli(ranks, "lda", "train", "--input", folder / "corpus.h5", "--topics", 4,
                  "--alpha", 0.2, "--beta", 0.05, "--seed", 7, "--output", folder / name,
                  "--json", *extra)
    assert out.returncode == 0, out
    return json.loads(out.stdout.strip().splitlines()[-1]), out


def test_train_writes_model_and_recovers_topics(corpus_file):
    from test_lda_train import matched_cosine
    folder, path = corpus_file
    summary, _ = _train(2, folder, "m2.h5", "--iterations", 40, "--heldout", 0.1,
                        "--eval-every", 20, "--optimize-every", 10)
    assert summary["ranks"] == 2 and summary["perplexity"] > 1
    with h5py.File(folder / "m2.h5") as f, h5py.File(path) as c:
        nwk = f["word_topic"][...]
        assert nwk.sum() == f["topic_totals"][...].sum() == f.attrs["n_tokens"]
        phi = (nwk.T + 0.05) / (nwk.sum(0)[:, None] + 0.05 * 150)
        assert matched_cosine(c["truth/phi"][...], phi) >= 0.9
        ids = f["doc_ids"][...]
        theta = f["doc_topics"][...]
        assert len(ids) == theta.shape[0] < 241 and np.all(np.diff(ids) > 0)
        np.testing.assert_allclose(theta.sum(1), 1, rtol=1e-5)
        assert f["history/compute_s"].shape == (40, 2) and f["history/bytes"][...].min() > 0
        assert np.isfinite(f["history/perplexity"][...]).sum() == 2
        assert [v.decode() for v in f["vocab"][:2]] == ["w0", "w1"]


def test_checkpoint_resume_equals_uninterrupted(corpus_file, tmp_path):
    folder, _ = corpus_file
    _train(2, folder, "full.h5", "--iterations", 6, "--optimize-every", 2)
    ck = tmp_path / "ck"
    _train(2, folder, "part.h5", "--iterations", 3, "--optimize-every", 2,
           "--checkpoint-dir", ck, "--checkpoint-every", 3)
    _train(2, folder, "resumed.h5", "--iterations", 6, "--optimize-every", 2,
           "--checkpoint-dir", ck, "--resume")
    with h5py.File(folder / "full.h5") as a, h5py.File(folder / "resumed.h5") as b:
        for key in ("word_topic", "alpha", "doc_topics", "history/log_likelihood"):
            np.testing.assert_array_equal(a[key][...], b[key][...])


def test_infer_and_topics(corpus_file):
    folder, path = corpus_file
    if not (folder / "m2.h5").exists():
        _train(2, folder, "m2.h5", "--iterations", 20)
    out = lda_cli(3, "lda", "infer", "--model", folder / "m2.h5", "--input", path,
                  "--output", folder / "theta.h5", "--sweeps", 10)
    assert out.returncode == 0, out
    with h5py.File(folder / "theta.h5") as f:
        assert f["doc_topics"].shape == (241, 4)
        np.testing.assert_array_equal(f["doc_ids"][...], np.arange(241))
    out = lda_cli(1, "lda", "topics", "--model", folder / "m2.h5", "--top-words", 3)
    assert out.returncode == 0 and out.stdout.count("topic") == 4


def test_convert_round_trip_and_bad_input(corpus_file, tmp_path):
    folder, path = corpus_file
    uci = tmp_path / "docword.syn.txt.gz"
    out = lda_cli(1, "data", "corpus", "convert", "--input", path, "--output", uci)
    assert out.returncode == 0, out
    back = tmp_path / "back.h5"
    out = lda_cli(2, "data", "corpus", "convert", "--input", uci,
                  "--vocab", tmp_path / "vocab.syn.txt", "--output", back)
    assert out.returncode == 0, out
    with h5py.File(path) as a, h5py.File(back) as b:
        for key in ("indptr", "indices", "data"):
            np.testing.assert_array_equal(a["corpus/" + key][...], b["corpus/" + key][...])
    bad = tmp_path / "docword.bad.txt"
    bad.write_text("2\n3\n2\n1 1 1\n2 9 1\n")
    out = lda_cli(2, "lda", "train", "--input", bad, "--topics", 3, "--iterations", 1)
    assert out.returncode == 2
    assert out.stderr.count("docword.bad.txt:5: word id out of range") == 1
    out = lda_cli(2, "lda", "train", "--input", path, "--topics", 1)
    assert out.returncode == 2 and "--topics must be >= 2" in out.stderr


def test_job_specs_parse():
    import hpcml.cli as cli
    from hpcml import jobs

    root = cli.build_parser()
    for name in ("demo-data-corpus.toml", "lda-demo.toml"):
        spec = jobs.load(os.path.join(ROOT, "jobs", name))
        args = root.parse_args([*spec.workload, *jobs.to_argv(spec, jobs.resolve(spec, root))])
        assert args.handler.__module__ == "hpcml.topics.cli"


def test_sigterm_checkpoints_then_resume_finishes(corpus_file, tmp_path):
    import signal
    import subprocess
    import time

    from hpcml.launch import mpiexec_path

    folder, path = corpus_file
    ck = tmp_path / "ck"
    argv = [mpiexec_path(), "-n", "2", sys.executable, "-m", "hpcml", "lda", "train",
            "--input", path, "--topics", 4, "--iterations", 100000, "--checkpoint-dir", ck,
            "--ll-every", 0, "--seed", 1]
    proc = subprocess.Popen(list(map(str, argv)), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for line in proc.stdout:
            if "iteration 3," in line:
                break
        time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 75, out
    saved = sorted(p.name for p in ck.iterdir() if p.name.startswith("ckpt-"))
    assert saved, out
    done = int(saved[-1].split("-")[1])
    res = lda_cli(2, "lda", "train", "--input", path, "--topics", 4, "--iterations", done + 2,
                  "--checkpoint-dir", ck, "--resume", "--seed", 1, "--json")
    assert res.returncode == 0, res
    assert json.loads(res.stdout.strip().splitlines()[-1])["iterations"] == done + 2


@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("text", [b"", b"\n", b"the and of\nthe a\n"])
def test_corpus_with_nothing_to_train_on_is_one_line(tmp_path, ranks, text):
    (tmp_path / "c.txt").write_bytes(text)
    out = lda_cli(ranks, "lda", "train", "--input", tmp_path / "c.txt", "--topics", 2, "--iterations", 2)
    assert out.returncode == 2 and "no tokens to train on" in out.stderr, out
    assert out.stderr.count("hpcml: error") == 1, out


def test_text_that_is_not_utf8_is_refused_not_split(tmp_path):
    (tmp_path / "c.txt").write_bytes("café crème bar\nfoo bar\n".encode("latin-1"))
    out = lda_cli(1, "data", "corpus", "convert", "--input", tmp_path / "c.txt", "--output", tmp_path / "c.h5")
    assert out.returncode == 2 and "not UTF-8 text at line 1 (byte 3)" in out.stderr, out
    assert not (tmp_path / "c.h5").exists()


def test_infer_says_when_documents_have_no_known_word(tmp_path):
    (tmp_path / "train.txt").write_text("apple banana cherry\nbanana cherry date\napple date date\n" * 10)
    assert lda_cli(1, "lda", "train", "--input", tmp_path / "train.txt", "--topics", 2, "--iterations", 3,
                   "--output", tmp_path / "m.h5").returncode == 0
    (tmp_path / "none.txt").write_text("zebra yak\nquokka\n")
    out = lda_cli(2, "lda", "infer", "--model", tmp_path / "m.h5", "--input", tmp_path / "none.txt",
                  "--output", tmp_path / "t.h5")
    assert out.returncode == 2 and "none of the 2 documents has a word of the model" in out.stderr, out
    assert not (tmp_path / "t.h5").exists()
    (tmp_path / "some.txt").write_text("apple banana\nzebra\ncherry date\n")
    out = lda_cli(2, "lda", "infer", "--model", tmp_path / "m.h5", "--input", tmp_path / "some.txt",
                  "--output", tmp_path / "t.h5")
    assert out.returncode == 0 and "1 of 3 documents have no word of the model" in out.stderr, out


@pytest.mark.parametrize("docword,topics", [
    (b"1\n3\n1\n1 1 2147483647\n", 3),        # one count of 2^31 - 1 tokens: 68 GB
    (b"1\n3\n3\n1 1 2\n1 2 1\n1 3 1\n", 10**12),  # 3 x 1e12 word-topic cells
])
def test_a_model_that_cannot_fit_is_refused_before_any_work(tmp_path, docword, topics):
    (tmp_path / "docword.big.txt").write_bytes(docword)
    (tmp_path / "vocab.big.txt").write_text("a\nb\nc\n")
    out = lda_cli(2, "lda", "train", "--input", tmp_path / "docword.big.txt", "--topics", topics,
                  "--iterations", 1, timeout=60)
    assert out.returncode == 2 and "LDA would need about" in out.stderr and "GB are available" in out.stderr, out
    assert out.stderr.count("hpcml: error") == 1 and out.seconds < 30, out
