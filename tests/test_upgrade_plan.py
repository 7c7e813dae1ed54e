"""python -m mlplatform.upgrade_plan: a synthetic bump of one pinned version, and hand-made renders."""

from __future__ import annotations

import copy
import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform import crds as crds_module
from mlplatform import render, upgrade_plan
from mlplatform.capture import Capture, CapturedResource, capture_stack
from mlplatform.upgrade_plan import Replacement, crd_change, plan_renders, schema_fields
from mlplatform.versions import COMPONENT_VERSIONS, CURRENT

JOBSET_CRD = crds_module.BUNDLES / "jobset-v0.12.0" / "jobset.x-k8s.io_jobsets.yaml"


def synthetic_jobset_crd() -> dict[str, Any]:
    """JobSet's CRD as a made-up 0.13.0 might ship it: a field added, one removed, one retyped, and
    a new version that becomes the stored one."""
    crd = yaml.safe_load(JOBSET_CRD.read_text())
    v1alpha2 = crd["spec"]["versions"][0]
    spec = v1alpha2["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    spec["gangPolicy"] = {"type": "object", "properties": {"mode": {"type": "string"}}}
    del spec["ttlSecondsAfterFinished"]
    spec["suspend"]["type"] = "string"
    v1alpha3 = copy.deepcopy(v1alpha2)
    v1alpha3["name"] = "v1alpha3"
    v1alpha2["storage"] = False
    crd["spec"]["versions"].append(v1alpha3)
    return crd


@pytest.fixture(scope="module")
def bumped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The dev stack rendered as pinned, then with JobSet bumped to a synthetic 0.13.0 (chart, image, CRD)."""
    out = tmp_path_factory.mktemp("bump")
    render.write_capture(capture_stack("dev"), out / "base")
    bundles = out / "bundles"
    shutil.copytree(crds_module.BUNDLES, bundles, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (bundles / "jobset-v0.13.0").mkdir()
    (bundles / "jobset-v0.13.0" / "jobset.x-k8s.io_jobsets.yaml").write_text(yaml.safe_dump(synthetic_jobset_crd()))
    bump = dataclasses.replace(
        CURRENT,
        jobset=dataclasses.replace(
            CURRENT.jobset,
            version="0.13.0",
            crds=dataclasses.replace(CURRENT.jobset.crds, bundle="jobset-v0.13.0"),
        ),
        jobset_image=(CURRENT.jobset_image[0], "v0.13.0"),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(crds_module, "BUNDLES", bundles)
        patch.setitem(COMPONENT_VERSIONS, "current", bump)
        render.write_capture(capture_stack("dev"), out / "head")
    return out / "base", out / "head"


def test_a_synthetic_bump_reports_the_version_the_crd_fields_and_the_order_exactly(bumped: tuple[Path, Path]) -> None:
    base, head = bumped
    (plan,) = plan_renders(base, head)
    assert plan.stack == "dev" and plan.versions_change and not plan.deletes_crds
    assert upgrade_plan.text([plan]) == (
        "== dev\n"
        "Versions:\n"
        "  Helm release jobset-system/jobset: oci://registry.k8s.io/jobset/charts/jobset 0.12.0 -> 0.13.0\n"
        "    image image.tag: v0.12.0 -> v0.13.0\n"
        "    CRDs: crds/, kept current by the program\n"
        "CRDs:\n"
        "  changed jobsets.jobset.x-k8s.io (jobset-v0.12.0 -> jobset-v0.13.0), applied by the program\n"
        "    versions: v1alpha2: served true, storage true -> served true, storage false\n"
        "    versions: v1alpha3 added (served true, storage true)\n"
        "    versions: storage version v1alpha2 -> v1alpha3: stored objects stay at v1alpha2 until rewritten\n"
        "    + v1alpha2 spec.gangPolicy\n"
        "    + v1alpha2 spec.gangPolicy.mode\n"
        "    - v1alpha2 spec.ttlSecondsAfterFinished\n"
        "    ~ type v1alpha2 spec.suspend: boolean -> string\n"
        "Replaced, not updated (deleted, then created):\n"
        "  (none)\n"
        "Apply order (each step after the one before; one step's items in parallel):\n"
        "  1. CustomResourceDefinition jobsets.jobset.x-k8s.io\n"
        "  2. Helm release jobset-system/jobset\n"
    )
    markdown = upgrade_plan.markdown([plan])
    assert markdown.startswith("### Upgrade plan\n")
    assert "#### `dev`: 1 releases, 1 CRDs, 0 replaced\n\n```text\n" in markdown  # short: not folded
    assert "- v1alpha2 spec.ttlSecondsAfterFinished" in markdown


def test_without_a_version_change_the_plan_says_so(bumped: tuple[Path, Path]) -> None:
    base, _ = bumped
    (plan,) = plan_renders(base, base)
    assert not plan.versions_change
    assert upgrade_plan.text([plan]) == "== dev\nno version, CRD or replacement changes\n"
    assert upgrade_plan.main(["--base-render", str(base), "--head-render", str(base), "--if-versions-change"]) == 0


# ---- hand-made renders: replacements, order, a dropped CRD --------------------------------------


def _k8s(name: str, manifest: dict[str, Any], deps: tuple[str, ...] = ()) -> CapturedResource:
    api, kind = manifest["apiVersion"], manifest["kind"]
    group_version = api if "/" in api else f"core/{api}"
    return CapturedResource(f"kubernetes:{group_version}:{kind}", name, f"urn:{name}", "", True, manifest, deps)


def _obj(api: str, kind: str, name: str, namespace: str | None = "ml", **body: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    meta |= body.pop("meta", {})
    return {"apiVersion": api, "kind": kind, "metadata": meta, **body}


def _pod(image: str) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "main", "image": image}]}}


def _crd(*, fields: dict[str, Any], stored: str = "v1") -> dict[str, Any]:
    versions = [
        {
            "name": v,
            "served": True,
            "storage": v == stored,
            "schema": {
                "openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": fields}}}
            },
        }
        for v in ("v1",)
    ]
    return _obj(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "things.example.com",
        None,
        spec={
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Thing", "plural": "things"},
            "versions": versions,
        },
    )


def _stack(*, new: bool) -> Capture:
    selector = {"matchLabels": {"app": "web-v2" if new else "web"}}
    deployment = _obj(
        "apps/v1",
        "Deployment",
        "web",
        spec={"selector": selector, "replicas": 3 if new else 2, "template": _pod("web:2" if new else "web:1")},
    )
    scaled = _obj(
        "apps/v1", "Deployment", "api", spec={"selector": {"matchLabels": {"app": "api"}}, "replicas": 3 if new else 2}
    )
    job = _obj("batch/v1", "Job", "migrate", spec={"template": _pod("migrate:2" if new else "migrate:1")})
    service = _obj("v1", "Service", "web", spec={"clusterIP": "10.0.0.2" if new else "10.0.0.1"})
    config = _obj("v1", "ConfigMap", "settings", data={"level": "debug" if new else "info"})
    binding = _obj(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "reader",
        roleRef={"kind": "Role", "name": "reader-v2" if new else "reader"},
    )
    train = _obj(
        "batch/v1",
        "Job",
        "train-2" if new else "train-1",
        meta={"labels": {"app.kubernetes.io/name": "train"}},
        spec={"template": _pod("t:1")},
    )
    crd = _crd(
        fields={"size": {"type": "integer"}} if new else {"size": {"type": "integer"}, "color": {"type": "string"}}
    )
    resources = [
        _k8s("crd", crd),
        _k8s("web", deployment, ("urn:crd",)),
        _k8s("api", scaled),
        _k8s("migrate", job, ("urn:web",)),
        _k8s("svc", service),
        _k8s("cfg", config),
        _k8s("rb", binding),
        _k8s("train", train, ("urn:migrate",)),
    ]
    if not new:
        old_versions = [{"name": "v1", "served": True, "storage": True}]
        dropped = _obj(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "olds.example.com",
            None,
            spec={"group": "example.com", "versions": old_versions},
        )
        resources.append(_k8s("gone", dropped))
    return Capture("s", resources)


@pytest.fixture()
def hand_made(tmp_path: Path) -> tuple[Path, Path]:
    render.write_capture(_stack(new=False), tmp_path / "base")
    render.write_capture(_stack(new=True), tmp_path / "head")
    return tmp_path / "base" / "s", tmp_path / "head" / "s"


def test_objects_replaced_rather_than_updated_are_named_with_the_immutable_field(hand_made: tuple[Path, Path]) -> None:
    (plan,) = plan_renders(*hand_made)
    assert plan.replacements == [
        Replacement("ConfigMap ml/settings", ("data changed (immutable)",)),
        Replacement("Deployment ml/web", ("spec.selector changed (immutable)",)),  # not its replicas or template
        Replacement("Job ml/migrate", ("spec.template changed (immutable)",)),
        Replacement("Job ml/train-2", ("renamed from Job ml/train-1",)),
        Replacement("RoleBinding ml/reader", ("roleRef changed (immutable)",)),
        Replacement("Service ml/web", ("spec.clusterIP changed (immutable)",)),
    ]
    # Deployment ml/api only scaled: updated in place, not listed.


def test_the_apply_order_follows_the_dependencies_and_a_dropped_crd_is_flagged(
    hand_made: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (plan,) = plan_renders(*hand_made)
    assert plan.order == [
        [
            "ConfigMap ml/settings",
            "CustomResourceDefinition things.example.com",
            "RoleBinding ml/reader",
            "Service ml/web",
        ],
        ["Deployment ml/web"],
        ["Job ml/migrate"],
        ["Job ml/train-2"],
    ]
    (removed,) = plan.deletes_crds
    assert removed.name == "olds.example.com"
    (changed,) = [c for c in plan.crds if c.status == "changed"]
    assert changed.removed_fields == ("v1 spec.color",) and changed.added_fields == ()
    base, head = hand_made
    assert upgrade_plan.main(["--base-render", str(base), "--head-render", str(head)]) == 1
    out = capsys.readouterr().out
    assert "REMOVED olds.example.com: Pulumi deletes it and every object of its kinds" in out


def test_crd_fields_are_json_paths_through_lists_and_maps() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "port": {"x-kubernetes-int-or-string": True},
                },
            }
        },
    }
    assert schema_fields(schema) == {
        "spec": "object",
        "spec.items": "array",
        "spec.items[].name": "string",
        "spec.labels": "object",
        "spec.port": "int-or-string",
    }
    crd = _crd(fields={"a": {"type": "string"}})
    assert crd_change("things.example.com", crd, copy.deepcopy(crd)) is None
    added = crd_change("things.example.com", None, crd)
    assert added is not None and added.status == "added" and added.versions == ("v1: served true, storage true",)


def test_bad_input_is_refused_with_the_directory_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert upgrade_plan.main(["--base-render", str(tmp_path / "nope"), "--head-render", str(tmp_path)]) == 2
    assert "base" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        upgrade_plan.main([])  # neither --from nor --base-render


def test_from_a_git_ref_renders_that_ref_with_its_own_code(capsys: pytest.CaptureFixture[str]) -> None:
    # HEAD against the working tree, which CI checks out clean: rendered twice, nothing to upgrade.
    assert upgrade_plan.main(["--from", "HEAD", "--stack", "dev"]) == 0
    out = capsys.readouterr().out
    assert out == "== dev\nno version, CRD or replacement changes\n", f"uncommitted program changes? {out}"
    assert upgrade_plan.main(["--from", "no-such-ref", "--stack", "dev"]) == 2
    assert "git archive no-such-ref" in capsys.readouterr().err
