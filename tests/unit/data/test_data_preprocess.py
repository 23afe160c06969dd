"""Preprocessing: .bin/.idx read back by megatron-core equal the tokenizer's ids; malformed lines; formats."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from megatron_lwz.data.preprocess import PreprocessConfig, PreprocessError, preprocess
from megatron_lwz.data.tokenizer import TokenizerConfig


def _cfg(inputs, prefix, tok_dir, **kw) -> PreprocessConfig:
    return PreprocessConfig(inputs=[str(i) for i in inputs], output_prefix=str(prefix),
                            tokenizer=TokenizerConfig(path=str(tok_dir)), progress=False, **kw)


def _read_back(prefix) -> list[list[int]]:
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    ds = IndexedDataset(str(prefix))
    assert len(ds.document_indices) - 1 == len(ds)  # one sequence per document
    return [ds[i].tolist() for i in range(len(ds))]


def _texts(path) -> list[str]:
    return [json.loads(line)["text"] for line in open(path, encoding="utf-8")]


@pytest.mark.parametrize("append_eod", [True, False])
def test_bin_idx_equal_tokenizer_ids(tmp_path, demo_dir, sp_tokenizer, sp_tokenizer_dir, append_eod):
    src = demo_dir / "reports.jsonl"
    summary = preprocess(_cfg([src], tmp_path / "rep", sp_tokenizer_dir, append_eod=append_eod, chunk_size=7))
    eod = [sp_tokenizer.eod] if append_eod else []
    expected = [sp_tokenizer.encode(t) + eod for t in _texts(src)]
    assert _read_back(tmp_path / "rep") == expected
    assert summary.documents == len(expected) and summary.tokens == sum(map(len, expected))
    assert summary.dtype == "uint16" and summary.malformed["total"] == 0
    on_disk = json.loads((tmp_path / "rep.summary.json").read_text())
    assert on_disk["documents"] == summary.documents and on_disk["inputs"] == [str(src)]
    assert on_disk["tokens_per_s"] > 0 and on_disk["append_eod"] is append_eod


def test_hf_tokenizer_and_workers_deterministic(tmp_path, demo_dir, hf_tokenizer_dir):
    from megatron_lwz.data.tokenizer import load_tokenizer

    srcs = [demo_dir / "cot.jsonl", demo_dir / "books.jsonl"]
    preprocess(_cfg(srcs, tmp_path / "one", hf_tokenizer_dir, workers=1, chunk_size=64))
    preprocess(_cfg(srcs, tmp_path / "two", hf_tokenizer_dir, workers=2, chunk_size=64))
    for suffix in (".bin", ".idx"):
        assert (tmp_path / f"one{suffix}").read_bytes() == (tmp_path / f"two{suffix}").read_bytes()
    tok = load_tokenizer(str(hf_tokenizer_dir))
    expected = [tok.encode(t) + [tok.eod] for s in srcs for t in _texts(s)]
    assert _read_back(tmp_path / "two") == expected


def _write_malformed(path: Path) -> dict[int, str]:
    lines = {
        1: json.dumps({"text": "A good first document."}),
        2: '{"text": "unterminated',
        3: json.dumps({"content": "wrong key"}),
        4: json.dumps({"text": 42}),
        5: json.dumps({"text": "   "}),
        6: "",
        7: json.dumps(["not", "an", "object"]),
        8: json.dumps({"text": "Second good document, 第二个。"}),
    }
    data = b"".join(lines[i].encode() + b"\n" for i in sorted(lines))
    data += b'{"text": "bad \xff utf8"}\n'  # line 9
    path.write_bytes(data)
    return {2: "bad_json", 3: "missing_key", 4: "non_text", 5: "empty_text", 6: "blank_line", 7: "not_object",
            9: "bad_utf8"}


def test_malformed_lines_counted_with_location(tmp_path, sp_tokenizer, sp_tokenizer_dir, capsys):
    src = tmp_path / "mixed.jsonl"
    bad = _write_malformed(src)
    summary = preprocess(_cfg([src], tmp_path / "mixed", sp_tokenizer_dir, chunk_size=3, max_errors_shown=3))
    assert summary.documents == 2 and summary.records == 9
    assert summary.malformed["total"] == len(bad)
    assert summary.malformed["by_kind"] == {kind: 1 for kind in bad.values()}
    examples = summary.malformed["examples"]
    for line, kind in bad.items():
        assert any(e.startswith(f"{src}:{line}: {kind}") for e in examples), (line, kind, examples)
    err = capsys.readouterr().err
    assert f"{src}:2: bad_json" in err and f"{src}:9:" not in err  # first 3 printed, all counted
    eod = sp_tokenizer.eod
    assert _read_back(tmp_path / "mixed") == [sp_tokenizer.encode("A good first document.") + [eod],
                                              sp_tokenizer.encode("Second good document, 第二个。") + [eod]]


def test_empty_input_clear_error(tmp_path, sp_tokenizer_dir):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(PreprocessError, match="no valid documents: the inputs are empty"):
        preprocess(_cfg([empty], tmp_path / "out", sp_tokenizer_dir))
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"body": "x"}\n{"body": "y"}\n')
    with pytest.raises(PreprocessError, match=r"all 2 records are malformed \(missing_key=2\).*--text-key"):
        preprocess(_cfg([junk], tmp_path / "out", sp_tokenizer_dir))
    assert not list(tmp_path.glob("*out*")) and not list(tmp_path.glob(".out*"))  # nothing half-written
    with pytest.raises(PreprocessError, match="no such file"):
        preprocess(_cfg([tmp_path / "missing.jsonl"], tmp_path / "out", sp_tokenizer_dir))
    with pytest.raises(PreprocessError, match="unsupported input format"):
        (tmp_path / "a.csv").write_text("text\n")
        preprocess(_cfg([tmp_path / "a.csv"], tmp_path / "out", sp_tokenizer_dir))


def test_gzip_and_parquet_inputs(tmp_path, demo_dir, sp_tokenizer_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = demo_dir / "papers.jsonl"
    preprocess(_cfg([src], tmp_path / "plain", sp_tokenizer_dir))
    gz = tmp_path / "papers.jsonl.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    preprocess(_cfg([gz], tmp_path / "gz", sp_tokenizer_dir, chunk_size=10))
    texts = _texts(src)
    pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), tmp_path / "p.parquet", row_group_size=16)
    summary = preprocess(_cfg([tmp_path / "p.parquet"], tmp_path / "pq", sp_tokenizer_dir, chunk_size=5, workers=2))
    plain = _read_back(tmp_path / "plain")
    assert _read_back(tmp_path / "gz") == plain
    assert _read_back(tmp_path / "pq") == plain and summary.records == len(texts)


def test_parquet_bad_values_and_missing_column(tmp_path, sp_tokenizer, sp_tokenizer_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["ok one", None, "", "ok two"]}), tmp_path / "a.parquet", row_group_size=2)
    pq.write_table(pa.table({"body": ["x", "y", "z"]}), tmp_path / "b.parquet")
    summary = preprocess(_cfg([tmp_path / "a.parquet", tmp_path / "b.parquet"], tmp_path / "o", sp_tokenizer_dir))
    assert summary.documents == 2
    assert summary.malformed["by_kind"] == {"missing_key": 3, "non_text": 1, "empty_text": 1}
    assert any(e.startswith(f"{tmp_path / 'a.parquet'}:2: non_text") for e in summary.malformed["examples"])
    assert any(e.startswith(f"{tmp_path / 'b.parquet'}:1: missing_key") for e in summary.malformed["examples"])
    assert _read_back(tmp_path / "o") == [sp_tokenizer.encode(t) + [sp_tokenizer.eod] for t in ("ok one", "ok two")]


def test_cli_preprocess(tmp_path, demo_dir, sp_tokenizer_dir, capsys):
    from megatron_lwz.cli.main import main

    rc = main(["preprocess", "--input", str(demo_dir / "books.jsonl"), "--output-prefix", str(tmp_path / "b"),
               "--tokenizer", str(sp_tokenizer_dir), "--no-progress", "--no-append-eod"])
    assert rc == 0 and "documents" in capsys.readouterr().out
    assert np.asarray(_read_back(tmp_path / "b")[0]).size > 0
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n")
    rc = main(["preprocess", "--input", str(empty), "--output-prefix", str(tmp_path / "e"),
               "--tokenizer", str(sp_tokenizer_dir), "--no-progress"])
    assert rc == 1 and "no valid documents" in capsys.readouterr().err


def test_directory_inputs_skip_metadata_json(demo_dir):
    from megatron_lwz.data.readers import expand_inputs

    names = [p.name for p in expand_inputs([str(demo_dir)])]
    assert "books.jsonl" in names and "manifest.json" not in names and names == sorted(names)
