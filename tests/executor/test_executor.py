"""The site executor: policy before pull, pull by digest, refusals, and real results."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import uuid

import docker
import pandas as pd
import pytest
from lifelines.datasets import load_gbsg2

from ptm_p2p.dev.images import push
from ptm_p2p.dev.registry import manifest_digest, repositories
from ptm_p2p.errors import PolicyError
from ptm_p2p.executor import ImageRef
from ptm_p2p.executor.pull import verify_repo_digest

pytestmark = pytest.mark.docker

# exact answers (no disclosure control, docs/privacy.md): the summary is checked against pandas
ALL = {"publishers": ["*"], "disclosure_control": False}


def fresh_repo(stack, name: str) -> str:
    return f"{stack.registry}/ptm/testing/{name}-{uuid.uuid4().hex[:8]}"


def forget_locally(client: docker.DockerClient, *refs: str) -> None:
    for ref in refs:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(ref)


@pytest.fixture
def gbsg2_csv(tmp_path):
    frame = load_gbsg2()
    path = tmp_path / "gbsg2.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_summary_matches_pandas(client, summary_ref, gbsg2_csv, make_executor, task):
    path, frame = gbsg2_csv
    executor = make_executor(
        {"images": [ImageRef.parse(summary_ref).repository], **ALL, "data": {"gbsg2": str(path)}}
    )
    result = executor.run(task(summary_ref, {"data": "gbsg2"}, ["gbsg2"]))
    assert result.status == "ok", (result.reason, result.logs)
    assert result.digest == summary_ref
    out = json.loads(result.output)
    assert out["rows"] == len(frame)
    for column in frame.select_dtypes("number").columns:
        stats, values = out["numeric"][column], frame[column].astype(float)
        assert stats["count"] == values.count()
        assert stats["sum"] == pytest.approx(values.sum())
        assert stats["sum_sq"] == pytest.approx((values**2).sum())
        assert (stats["min"], stats["max"]) == (values.min(), values.max())
    for column in ("horTh", "menostat", "tgrade"):
        expected = frame[column].astype(str).value_counts().to_dict()
        assert out["categorical"][column] == expected
    assert out["suppressed"] == {}


def test_summary_suppresses_small_groups(client, summary_ref, tmp_path, make_executor, task):
    rows = [("A", i) for i in range(10)] + [("B", i) for i in range(7)] + [("C", 1)] * 2
    rows += [("D", 1)] * 6 + [("E", 2)] * 3
    path = tmp_path / "small.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["group", "value"])
        writer.writerows(rows)
    executor = make_executor(
        {"images": [summary_ref], **ALL, "data": {"t": str(path)}, "min_group_size": 5}
    )
    out = json.loads(executor.run(task(summary_ref, {}, ["t"])).output)
    # C (2) and E (3) are under 5; together 5 >= 5, so no complement needs hiding.
    assert out["categorical"]["group"] == {"A": 10, "B": 7, "D": 6}
    assert out["suppressed"] == {"group": ["C", "E"]}

    executor = make_executor(
        {"images": [summary_ref], **ALL, "data": {"t": str(path)}, "min_group_size": 7}
    )
    out = json.loads(executor.run(task(summary_ref, {"columns": ["group"]}, ["t"])).output)
    # Under 7: C, E, D (11 rows hidden, enough); A and B stay.
    assert out["categorical"]["group"] == {"A": 10, "B": 7}
    assert out["min_group_size"] == 7
    assert "value" not in out["numeric"]


def test_summary_refuses_tiny_data_set(client, summary_ref, tmp_path, make_executor, task):
    path = tmp_path / "tiny.csv"
    path.write_text("x\n1\n2\n3\n")
    executor = make_executor({"images": [summary_ref], **ALL, "data": {"t": str(path)}})
    result = executor.run(task(summary_ref, {}, ["t"]))
    assert result.status == "failed"
    assert "fewer rows than the minimum group size 5" in json.loads(result.output)["error"]


def test_image_outside_policy_is_refused_before_any_pull(
    client, stack, probe_ref, make_executor, task
):
    repo = fresh_repo(stack, "unlisted")
    client.images.get(probe_ref).tag(repo, "v1")
    pinned = push(client, repo, "v1")
    forget_locally(client, f"{repo}:v1", pinned)
    executor = make_executor({"images": [f"{stack.registry}/ptm/summary"], **ALL})
    result = executor.run(task(pinned))
    assert result.status == "refused"
    assert "not allowed by this site's policy" in result.reason
    assert executor.puller.pulls == 0
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(pinned)
    # The same task under a policy that allows it does pull: the counter is not idle.
    allowing = make_executor({"images": [repo], **ALL})
    assert allowing.run(task(pinned, {"action": "echo"})).status == "ok"
    assert allowing.puller.pulls == 1
    forget_locally(client, pinned)


def test_tag_moved_to_other_content_is_refused(client, stack, probe_ref, make_executor, task):
    repo = fresh_repo(stack, "moved")
    # Two images with content found nowhere else, so the engine must really fetch them.
    variant_a, variant_b = f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
    build_variant(client, probe_ref, variant_a, f"{repo}:v1")
    signed = push(client, repo, "v1")  # what the researcher signed
    build_variant(client, probe_ref, variant_b, f"{repo}:v1")  # someone moves the tag
    moved = push(client, repo, "v1")
    assert moved != signed
    assert manifest_digest(stack.registry, repo.split("/", 1)[1], "v1") == moved.split("@")[1]
    # The engine's record of the other image does not match the signed digest: refused.
    with pytest.raises(PolicyError, match="signed digest and the content differ"):
        verify_repo_digest(client.images.get(moved), ImageRef.parse(signed))
    forget_locally(client, signed, moved, f"{repo}:v1")
    executor = make_executor({"images": [repo], **ALL})
    # By digest the site still gets exactly the signed content, not what the tag says now.
    result = executor.run(task(signed, {"action": "echo"}))
    assert result.status == "ok", result.reason
    assert json.loads(result.output)["variant"] == variant_a
    assert result.digest == signed
    assert executor.puller.pulls == 1
    forget_locally(client, signed, moved)


def test_digest_the_registry_never_held_is_refused(client, stack, make_executor, task):
    repo = f"{stack.registry}/ptm/summary"
    unknown = f"{repo}@sha256:{'0' * 63}1"
    executor = make_executor({"images": [repo], **ALL})
    result = executor.run(task(unknown))
    assert result.status == "refused"
    assert "does not hold this digest" in result.reason
    assert executor.puller.pulls == 1


def test_bare_digest_is_not_pulled_from_the_publishers_registry(
    client, stack, probe_ref, make_executor, task
):
    digest = probe_ref.split("@", 1)[1]
    executor = make_executor({"images": [digest], **ALL})
    # Same content, but on a host the site never chose (nothing listens there: loopback).
    result = executor.run(task(f"127.0.0.1:5999/ptm/testing/probe@{digest}"))
    assert result.status == "refused"
    assert "pulls only from the registries its policy names" in result.reason
    assert executor.puller.pulls == 0


def build_variant(client, base: str, variant: str, tag: str) -> None:
    dockerfile = f"FROM {base}\nENV PROBE_VARIANT={variant}\n"
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, pull=False)


def test_unpinned_image_is_refused(client, stack, make_executor, task):
    executor = make_executor({"images": [f"{stack.registry}/ptm/summary"], **ALL})
    result = executor.run(task(f"{stack.registry}/ptm/summary:latest"))
    assert result.status == "refused"
    assert "not pinned by digest" in result.reason
    assert executor.puller.pulls == 0


def test_unknown_data_label_is_refused(client, summary_ref, tmp_path, make_executor, task):
    (tmp_path / "a.csv").write_text("x\n")
    executor = make_executor(
        {"images": [summary_ref], **ALL, "data": {"registry": str(tmp_path / "a.csv")}}
    )
    result = executor.run(task(summary_ref, {}, ["patients"]))
    assert result.status == "refused"
    assert "data label 'patients' is not offered by this site (labels: registry)" in (result.reason)
    assert executor.puller.pulls == 0


def test_publisher_not_allowed_is_refused(client, summary_ref, make_executor, task):
    executor = make_executor({"images": [summary_ref], "publishers": ["other-org"]})
    result = executor.run(task(summary_ref))
    assert result.status == "refused"
    assert "publisher uni-research is not allowed" in result.reason


def test_empty_policy_allows_nothing(client, summary_ref, make_executor, task):
    executor = make_executor({})
    result = executor.run(task(summary_ref))
    assert result.status == "refused"


def test_task_timeout_is_narrowed_not_widened(client, stack, probe_ref, make_executor, task):
    repo = ImageRef.parse(probe_ref).repository
    executor = make_executor({"images": [repo], **ALL, "limits": {"timeout": 2}})
    result = executor.run(task(probe_ref, {"action": "sleep", "seconds": 60}, timeout_s=1000))
    assert result.status == "timeout"
    assert result.limits.timeout_s == 2


def test_registry_holds_project_images(stack):
    names = repositories(stack.registry)
    assert "ptm/summary" in names and "ptm/testing/probe" in names
    for name, ref in stack.images.items():
        assert manifest_digest(stack.registry, f"ptm/{name}", "latest") == ref.split("@")[1]


def test_summary_numbers_from_csv_module(client, summary_ref, tmp_path, make_executor, task):
    """A second reference computation, with the csv module and mixed missing values."""
    text = "age,site\n50,x\n61,x\n,y\n70,x\n45,y\n52,y\n39,x\n48,y\n44,x\n58,y\n"
    path = tmp_path / "m.csv"
    path.write_text(text)
    executor = make_executor({"images": [summary_ref], **ALL, "data": {"m": str(path)}})
    out = json.loads(executor.run(task(summary_ref, {}, ["m"])).output)
    ages = [float(r["age"]) for r in csv.DictReader(io.StringIO(text)) if r["age"]]
    assert out["numeric"]["age"] == {
        "count": len(ages),
        "missing": 1,
        "sum": sum(ages),
        "sum_sq": sum(a * a for a in ages),
        "min": min(ages),
        "max": max(ages),
    }
    frame = pd.read_csv(path)
    assert out["categorical"]["site"] == frame["site"].value_counts().to_dict()
