"""Label encodings and missing-value markers, end to end through the pipeline's real parts: a
tiny CSV read by the ExampleGen's own PTransform (components.csv_example_gen), then the real
preprocessing_fn in tf.Transform. What each encoding must give: the encoded label and weight
per row, as README "Heads config" documents them."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf

from components.csv_example_gen import CsvToExamples
from headwise import config as config_lib
from headwise import tasks
from tests.tft_helpers import run_transform
from trainer import model as model_lib
from trainer.heads import label_key, weight_key

KINDS = {"int64_list": tf.int64, "float_list": tf.float32, "bytes_list": tf.string}


def read_csv(tmp_path, text: str, missing_values=config_lib.DEFAULT_MISSING_VALUES,
             name: str = "data.csv", newline: str = "\n", bom: bool = False):
    """(rows, feature spec) as the pipeline's ExampleGen writes them from `text`."""
    path = tmp_path / name
    body = newline.join(text.strip().splitlines()) + newline
    path.write_bytes(((("\ufeff" if bom else "") + body)).encode("utf-8"))
    out = str(tmp_path / "examples")
    with beam.Pipeline() as p:
        _ = (p | CsvToExamples(str(path), missing_values)
             | beam.io.WriteToTFRecord(out, shard_name_template=""))
    rows, spec = [], {}
    for record in tf.data.TFRecordDataset(out):
        ex = tf.train.Example.FromString(record.numpy())
        row = {}
        for k, f in ex.features.feature.items():
            kind = f.WhichOneof("kind")
            if kind:
                spec[k] = tf.io.VarLenFeature(KINDS[kind])
            row[k] = list(getattr(f, kind).value) if kind else []
        rows.append(row)
    return rows, spec


def transform(tmp_path, rows, spec, heads, features=None):
    features = features or {"x": "numeric"}
    cfg = config_lib.from_dict({"name": "enc", "data": {"csv": "unused.csv"},
                                "features": features, "heads": heads,
                                "model": {"hidden_units": [4]}})
    for r in rows:  # every spec column in every row (an empty list: missing)
        for k in spec:
            r.setdefault(k, [])
    tft_output, out = run_transform(cfg, rows, spec, str(tmp_path / "tft"))
    return cfg, tft_output, out


def encoded(out, head):
    return ([r[label_key(head)] for r in out], [r[weight_key(head)] for r in out])


def test_missing_value_markers_become_missing_and_numbers_stay_numbers(tmp_path):
    rows, spec = read_csv(tmp_path, """
x,y,c
1.5,10,a
NA,NaN,N/A
2.5,null,b
 NA ,30,
""")
    # The markers never reached the examples: x and y are numbers, c text, and every marked
    # cell (blanks around it too) is an empty value list, like an empty cell.
    assert spec["x"].dtype == tf.float32 and spec["y"].dtype == tf.int64
    assert [r["x"] for r in rows] == [[1.5], [], [2.5], []]
    assert [r["y"] for r in rows] == [[10], [], [], [30]]
    assert [r["c"] for r in rows] == [[b"a"], [], [b"b"], []]
    _, _, out = transform(tmp_path, rows, spec,
                          [{"name": "y", "label": "y", "task": "regression"}])
    labels, weights = encoded(out, "y")
    assert weights == [1.0, 0.0, 0.0, 1.0]
    assert [labels[0], labels[3]] == [10.0, 30.0]


def test_markers_are_a_setting(tmp_path):
    rows, spec = read_csv(tmp_path, "x,y\n1,-999\n2,5\n-999,6", missing_values=["-999"])
    assert [r["y"] for r in rows] == [[], [5], [6]]
    assert [r["x"] for r in rows] == [[1], [2], []]


def test_bom_and_crlf(tmp_path):
    rows, spec = read_csv(tmp_path, "first,y\n1,a\n2,b", newline="\r\n", bom=True)
    assert set(spec) == {"first", "y"}  # not '\ufefffirst'
    assert [r["y"] for r in rows] == [[b"a"], [b"b"]]  # no '\r' left on the last column
    from headwise.sources import CsvSource

    assert CsvSource().columns(str(tmp_path / "data.csv")) == ["first", "y"]


@pytest.mark.parametrize("column,positive,expected", [
    # 0/1 numbers
    ("1\n0\n1\n", None, ([1, 0, 1], [1, 1, 1])),
    ("1.0\n0.0\n\n", None, ([1, 0, 0], [1, 1, 0])),
    # booleans, any case
    ("true\nFALSE\nTrue\n", None, ([1, 0, 1], [1, 1, 1])),
    # two text values, the positive one named
    ("male\nfemale\nNA\nMale\n", "male", ([1, 0, 0, 1], [1, 1, 0, 1])),
    # two numbers, the positive one named (as YAML reads it: a number)
    ("2\n1\n2\n", 2, ([1, 0, 1], [1, 1, 1])),
    # one value against the rest of a many-valued column (census: never married)
    (" Never married\nWidowed\nDivorced\nnever married\n?\n", "Never married",
     ([1, 0, 0, 1, 0], [1, 1, 1, 1, 1])),
    # several values against the rest (one-vs-rest of a group)
    ("Married\nNever married\nDivorced\nwidowed\nNA\n", ["Divorced", "Widowed"],
     ([0, 0, 1, 1, 0], [1, 1, 1, 1, 0])),
    # a threshold on a numeric column: ints compared exactly, floats as the data holds them
    ("10\n50000\n50001\n\n70000\n", {"positive_if": {"greater_than": 50000}},
     ([0, 0, 1, 0, 1], [1, 1, 1, 0, 1])),
    ("0.1\n0.2\n0.05\n1e9\n", {"positive_if": {"less_or_equal": 0.1}},
     ([1, 0, 1, 0], [1, 1, 1, 1])),
    ("3\n2.5\n-1\n", {"positive_if": {"greater_or_equal": 2.5}}, ([1, 1, 0], [1, 1, 1])),
])
def test_binary_label_encodings(tmp_path, column, positive, expected):
    lines = column.splitlines()
    text = "x,y\n" + "\n".join(f"{i},{v}" for i, v in enumerate(lines))
    rows, spec = read_csv(tmp_path, text)
    head = {"name": "y", "label": "y", "task": "binary"}
    if isinstance(positive, dict):
        head.update(positive)
    elif positive is not None:
        head["positive"] = positive
    cfg, _, out = transform(tmp_path, rows, spec, [head])
    labels, weights = encoded(out, "y")
    want_labels, want_weights = expected
    assert weights == [float(w) for w in want_weights]
    assert [lab for lab, w in zip(labels, weights, strict=True) if w] == [
        float(v) for v, w in zip(want_labels, want_weights, strict=True) if w]
    # The Python rule (baselines, report) agrees with the graph on every present label.
    task, h = tasks.of(cfg.heads[0]), cfg.heads[0]
    py = [task.encode(h, r["y"][0]) if r["y"] else None for r in rows]
    assert [p for p, w in zip(py, weights, strict=True) if w] == [
        lab for lab, w in zip(labels, weights, strict=True) if w]


@pytest.mark.parametrize("column,classes", [
    ("1\n2\n3\n2\n", [1, 2]),          # ints in the data, ints in the YAML
    ("1.0\n2.0\n3.0\n2.0\n", [1, 2]),  # float-stored classes (ExampleGen writes floats)
    ("1\n2\n3\n2\n", ["1.0", "2"]),    # written as text in the YAML
    ("a\nb\nc\nb\n", ["a", "b"]),      # text
])
def test_multiclass_labels_match_classes_however_stored(tmp_path, column, classes):
    text = "x,y\n" + "\n".join(f"{i},{v}" for i, v in enumerate(column.splitlines()))
    rows, spec = read_csv(tmp_path, text)
    cfg, _, out = transform(tmp_path, rows, spec, [
        {"name": "y", "label": "y", "task": "multiclass", "classes": classes,
         "other_class": "other"}])
    labels, weights = encoded(out, "y")
    assert labels == [0, 1, 2, 1] and weights == [1.0] * 4  # the third is `other`
    task, h = tasks.of(cfg.heads[0]), cfg.heads[0]
    assert [task.encode(h, r["y"][0]) for r in rows] == labels


def _multiclass(tmp_path, values, head, other, want_labels, want_weights):
    """Transform a CSV whose label column `y` holds `values` with the multiclass `head` (and
    `other_class: other`), check the encoded labels and weights against the wanted ones;
    (cfg, tft_output, rows, labels, weights)."""
    rows, spec = read_csv(tmp_path, "x,y\n" + "\n".join(f"{i},{v}"
                                                         for i, v in enumerate(values)))
    if other:
        head = {**head, "other_class": other}
    cfg, tft_output, out = transform(tmp_path, rows, spec, [head])
    labels, weights = encoded(out, "y")
    assert weights == [float(w) for w in want_weights]
    assert [lab for lab, w in zip(labels, weights, strict=True) if w] == [
        lab for lab, w in zip(want_labels, want_weights, strict=True) if w]
    return cfg, tft_output, rows, labels, weights


@pytest.mark.parametrize("other,want_labels,want_weights", [
    ("rest", [0, 0, 1, 2, 1, 0, 0], [1, 1, 1, 1, 1, 1, 0]),
    (None, [0, 0, 1, 1, 1, 0, 0], [1, 1, 1, 0, 1, 1, 0]),  # no catch-all: `Dispute` missing
])
def test_multiclass_classes_merge_label_values(tmp_path, other, want_labels, want_weights):
    """`classes: {card: [Credit Card, Prcard], cash: Cash}`: values merged into named classes,
    in the graph and in the registry's rule alike."""
    cfg, _, rows, labels, weights = _multiclass(
        tmp_path, ["Credit Card", "Prcard", "Cash", "Dispute", " Cash", "Credit Card", "NA"],
        {"name": "y", "label": "y", "task": "multiclass",
         "classes": {"card": ["Credit Card", "Prcard"], "cash": "Cash"}},
        other, want_labels, want_weights)
    h = cfg.heads[0]
    assert tasks.of(h).class_names(h) == ("card", "cash", *([other] if other else []))
    py = [tasks.of(h).encode(h, r["y"][0]) if r["y"] else None for r in rows]
    assert [p for p, w in zip(py, weights, strict=True) if w] == [
        lab for lab, w in zip(labels, weights, strict=True) if w]
    assert "card = Credit Card, Prcard; cash = Cash" in tasks.of(h).derivation(h)
    assert config_lib.from_json(config_lib.to_json(cfg)) == cfg  # the boundary keeps the map


@pytest.mark.parametrize("scale", [1e-6, 1e9, 1e12])
def test_regression_label_statistics_are_exact_at_any_scale(tmp_path, scale):
    """Mean and std as Transform computed them, in float64 (what the model's output layer and
    loss scale use), against numpy over the values the examples hold."""
    rng = np.random.default_rng(0)
    values = scale * (5 + rng.normal(size=40))
    text = "x,y\n" + "\n".join(f"{i},{v!r}" for i, v in enumerate(values))
    rows, spec = read_csv(tmp_path, text)
    cfg, tft_output, out = transform(tmp_path, rows, spec,
                                     [{"name": "y", "label": "y", "task": "regression"}])
    held = np.array([r["y"][0] for r in rows], np.float64)  # float32 in the examples
    stats = model_lib.regression_stats(cfg, tft_output)["y"]
    assert stats["mean"] == pytest.approx(held.mean(), rel=1e-12)
    assert stats["std"] == pytest.approx(held.std(), rel=1e-9)
    z = np.array([r["zlabel__y"] for r in out])
    assert np.all(np.isfinite(z)) and z.std() == pytest.approx(1.0, rel=1e-5)


def test_unix_timestamps_as_a_regression_label(tmp_path):
    """Integers around 1.4e9 (the taxi data's trip_start_timestamp): exact int64 examples."""
    values = 1_400_000_000 + np.arange(0, 40 * 86_400, 86_400)
    text = "x,y\n" + "\n".join(f"{i},{v}" for i, v in enumerate(values))
    rows, spec = read_csv(tmp_path, text)
    assert spec["y"].dtype == tf.int64
    cfg, tft_output, _ = transform(tmp_path, rows, spec,
                                   [{"name": "y", "label": "y", "task": "regression"}])
    stats = model_lib.regression_stats(cfg, tft_output)["y"]
    assert stats["mean"] == values.mean() and stats["std"] == pytest.approx(values.std(),
                                                                             rel=1e-12)


def test_schema_statistics_read_markers_as_missing(tmp_path):
    """`headwise schema` reads the CSV as ExampleGen does: NA is missing, not a text value."""
    from pipeline import schema as schema_lib

    path = tmp_path / "d.csv"
    path.write_text("x,y\n1.5,1\nNA,0\n2.5,NA\n")
    cfg = config_lib.from_dict({"name": "s", "data": {"csv": str(path)},
                                "features": {"x": "numeric"},
                                "heads": [{"name": "y", "label": "y", "task": "binary"}]})
    schema = schema_lib.generate_schema(cfg)
    types = {f.name: f.type for f in schema.feature}
    from tensorflow_metadata.proto.v0 import schema_pb2

    assert types == {"x": schema_pb2.FLOAT, "y": schema_pb2.INT}
    presence = {f.name: f.presence.min_fraction for f in schema.feature}
    assert presence["x"] == pytest.approx(2 / 3 - 0.05, abs=0.01)


def _cfg(tmp_path, text: str, head: dict, features=None, source: str = "csv"):
    """The CSV text as the data of a one-head config; as `source` "parquet", the same rows in a
    Parquet file, typed as pyarrow reads the CSV."""
    path = tmp_path / "d.csv"
    path.write_text(text)
    if source == "parquet":
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        table = pacsv.read_csv(str(path))
        path = tmp_path / "d.parquet"
        pq.write_table(table, path)
    return str(path), config_lib.from_dict({
        "name": "c", "data": {source: str(path)}, "features": features or {"x": "numeric"},
        "heads": [head]}, source="c.yaml")


SOURCES = ["csv", "parquet"]  # every pre-flight case below runs through both data sources


@pytest.mark.parametrize("text,head,words", [
    # a text binary label without `positive`: stops before anything runs, naming the head
    ("x,y\n1,yes\n2,no\n", {"task": "binary"},
     ["heads[0] (y) in c.yaml", "'no', 'yes'", "add `positive: <value>`"]),
    ("x,y\n1,a\n2,b\n", {"task": "binary", "positive": "male"},
     ["positive: 'male' never occurs"]),
    ("x,y\n1,a\n2,b\n", {"task": "binary", "positive": ["c", "d"]},
     ["positive: none of ['c', 'd'] occurs", "'a', 'b'"]),
    ("x,y\n1,a\n2,b\n", {"task": "binary", "positive": ["a", "B"]},
     ["every value is a positive one"]),
    ("x,y\n1,10\n2,many\n", {"task": "binary", "positive_if": {"greater_than": 5}},
     ["positive_if compares numbers", "'many'"]),
    ("x,y\n1,10\n2,20\n", {"task": "binary", "positive_if": {"greater_than": 50}},
     ["no value is > 50", "one class only"]),
    ("x,y\n1,1\n2,2\n", {"task": "binary"}, ["'2'", "0/1 or true/false"]),
    ("x,y\n1,one\n2,two\n", {"task": "multiclass", "classes": [1, 2]},
     ["none of its values is one of classes ['1', '2']"]),
    ("x,y\n1,a;b\n2,b;a\n3,a\n", {"task": "multilabel", "classes": ["b", "c"]},
     ["none of its tags (split on '|') is one of classes ['b', 'c']", "'a;b'"]),
    # a numeric column with a token that is no number and no marker: line, column, value, fix
    # (in Parquet, the column is text: its type is named)
    ("x,y\n1,1\n?,0\n", {"task": "binary"},
     {"csv": ["line 3, column 'x': '?' is not a number",
              "add it to data.missing_values in c.yaml"],
      "parquet": ["column 'x': type string", "the column must be numeric (features.x is "
                  "numeric)", "Cast it to a number"]}),
])
@pytest.mark.parametrize("source", SOURCES)
def test_preflight_stops_bad_label_values_naming_head_and_values(tmp_path, text, head, words,
                                                                 source):
    from headwise import data_check, sources

    path, cfg = _cfg(tmp_path, text, {"name": "y", "label": "y", **head}, source=source)
    with pytest.raises(data_check.DataError) as e:
        sources.of(cfg).check(path, cfg)
    assert path in str(e.value)
    for w in words[source] if isinstance(words, dict) else words:
        assert w in str(e.value), str(e.value)


@pytest.mark.parametrize("text,head", [
    ("x,y\n1,true\n2,False\nNA,NA\n", {"task": "binary"}),
    ("x,y\n1,Male\n2,female\n3,\n", {"task": "binary", "positive": "male"}),
    ("x,y\n1,a\n2,b\n3,c\n", {"task": "binary", "positive": ["a", "c"]}),
    ("x,y\n1,10\n2,60\n3,\n", {"task": "binary", "positive_if": {"greater_than": 50}}),
    ("x,y\n1,1.0\n2,2\n3,7\n", {"task": "multiclass", "classes": [1, 2], "other_class": "o"}),
    ("x,y\n1,a\n2,b\n3,c\n", {"task": "multiclass", "classes": {"ab": ["a", "b"], "c": "c"}}),
    ("x,y\n1,b|a\n2,a|z\n3,b| a\n", {"task": "multilabel", "classes": ["a", "b"]}),
])
@pytest.mark.parametrize("source", SOURCES)
def test_preflight_accepts_every_documented_encoding(tmp_path, text, head, source):
    from headwise import sources

    path, cfg = _cfg(tmp_path, text, {"name": "y", "label": "y", **head}, source=source)
    assert sources.of(cfg).check(path, cfg) == 3


@pytest.mark.parametrize("head,words", [
    ({"task": "regression", "positive": "a"}, "only binary heads take 'positive'"),
    ({"task": "binary", "positive": True}, "is a YAML boolean"),
    ({"task": "binary", "positive": []}, "an empty list"),
    ({"task": "binary", "positive": "a", "positive_if": {"greater_than": 1}},
     "takes `positive` .* or `positive_if`"),
    ({"task": "binary", "positive_if": {"above": 1}}, "expected one comparison with a number"),
    ({"task": "binary", "positive_if": {"greater_than": "x"}}, "expected a number, got 'x'"),
    ({"task": "regression", "positive_if": {"greater_than": 1}},
     "only binary heads take 'positive_if'"),
    ({"task": "multiclass", "classes": [True, False]}, "is a YAML boolean"),
    ({"task": "multiclass", "classes": {"a": [], "b": "x"}}, "each class names the label"),
    ({"task": "multiclass", "classes": {"a": ["x", "y"], "b": "x"}}, "'x' is in two classes"),
    ({"task": "multiclass", "classes": {"a": "x"}}, "at least two distinct classes"),
])
def test_label_values_in_the_config_are_checked(head, words):
    with pytest.raises(config_lib.ConfigError, match=words):
        config_lib.from_dict({"name": "c", "data": {"csv": "d.csv"}, "features": {"x": "numeric"},
                              "heads": [{"name": "y", "label": "y", **head}]})


@pytest.mark.parametrize("other,want_labels,want_weights", [
    ("rest", [0, 1, 0, 2, 0, 1, 0], [1, 1, 1, 1, 1, 1, 0]),  # c is beyond top_k: `rest`
    (None, [0, 1, 0, 0, 0, 1, 0], [1, 1, 1, 0, 1, 1, 0]),    # ... or a missing label
])
def test_multiclass_classes_learned_by_transform(tmp_path, other, want_labels, want_weights):
    """No `classes`: one vocabulary of the labels, most frequent first, at most top_k."""
    from trainer.run import learned_classes

    cfg, tft_output, rows, labels, weights = _multiclass(
        tmp_path, ["b", "a", "b", "c", " b", "a", "NA"],
        {"name": "y", "label": "y", "task": "multiclass", "top_k": 2}, other, want_labels,
        want_weights)
    learned = learned_classes(cfg, tft_output)
    assert learned == {"y": ["b", "a"]}
    resolved = cfg.with_learned_classes(learned).heads[0]
    assert tasks.of(resolved).class_names(resolved) == ("b", "a", *((other,) if other else ()))
    # The Python rule on the resolved head agrees with the graph (baselines, report).
    py = [tasks.of(resolved).encode(resolved, r["y"][0]) if r["y"] else None for r in rows]
    assert [p for p, w in zip(py, weights, strict=True) if w] == [
        lab for lab, w in zip(labels, weights, strict=True) if w]


def test_learned_numeric_classes_are_named_by_value(tmp_path):
    from trainer.run import learned_classes

    rows, spec = read_csv(tmp_path, "x,y\n1,3.0\n2,1.0\n3,3.0\n4,2.5")
    cfg, tft_output, _ = transform(tmp_path, rows, spec,
                                   [{"name": "y", "label": "y", "task": "multiclass"}])
    assert learned_classes(cfg, tft_output)["y"] == ["3", "2.5", "1"]


def test_multilabel_combinations_are_not_schema_categories(tmp_path):
    """The schema keeps no domain of "a|b" strings (a new order or combination of known tags is
    no unseen value); the tags are validated one by one before the run (test above)."""
    from pipeline import schema as schema_lib

    path = tmp_path / "d.csv"
    path.write_text("x,t,c\n" + "".join(f"{i},{tags},{cat}\n" for i, (tags, cat) in enumerate(
        [("a|b", "p"), ("b", "q"), ("a", "p"), ("b|a", "q")] * 5)))
    cfg = config_lib.from_dict({"name": "s", "data": {"csv": str(path)},
                                "features": {"x": "numeric", "c": "categorical"},
                                "heads": [{"name": "t", "label": "t", "task": "multilabel",
                                           "classes": ["a", "b"]}]})
    schema = schema_lib.generate_schema(cfg)
    by_name = {f.name: f for f in schema.feature}
    assert not by_name["t"].HasField("domain") and not by_name["t"].HasField("string_domain")
    assert by_name["c"].HasField("domain")  # an ordinary categorical keeps its vocabulary
    assert [d.name for d in schema.string_domain] == ["c"]


@pytest.mark.parametrize("top_k,vocab", [
    (None, ["b", "d", "a", "e"]),  # every value: by count, ties by descending bytes
    (3, ["b", "d", "a"]),          # the 3 most frequent; e shares the oov ids with missing
])
def test_categorical_feature_vocabulary_and_oov_ids(tmp_path, top_k, vocab):
    """A categorical feature's ids: its vocabulary index (most frequent first, at most top_k);
    missing and values outside the vocabulary hash into the oov_buckets ids after it."""
    values = ["b", "a", "d", "b", "e", "", "d", "a", "b"]
    rows, spec = read_csv(tmp_path, "x,c,y\n" + "\n".join(
        f"{i},{v},{i % 2}" for i, v in enumerate(values)))
    feature = {"type": "categorical", "oov_buckets": 2, **({"top_k": top_k} if top_k else {})}
    _, tft_output, out = transform(tmp_path, rows, spec,
                                   [{"name": "y", "label": "y", "task": "binary"}],
                                   features={"x": "numeric", "c": feature})
    assert [v.decode() for v in tft_output.vocabulary_by_name("c")] == vocab
    assert tft_output.vocabulary_size_by_name("c") == len(vocab)
    ids = [r["c"] for r in out]
    for v, i in zip(values, ids, strict=True):
        if v in vocab:
            assert i == vocab.index(v), (v, i)
        else:
            assert len(vocab) <= i < len(vocab) + 2, (v, i)


def test_the_largest_top_k_is_what_tfts_approximate_vocabulary_allows():
    import tensorflow_transform as tft

    from headwise.config import features

    assert features.MAX_TOP_K == tft.analyzers.LARGE_VOCAB_TOP_K
