"""The link from a rendered Job, in Argo CD's UI, to the commits of its file."""

from __future__ import annotations

import yaml

from reconciler.rendering import ARGOCD_LINK
from reconciler.templates import template_files
from tests.conftest import NOW
from tests.rendering.scenario import decide_and_render

HISTORY = "https://git.example.invalid/acme/fleet/commits/main/{path}"


def with_history_url(url: str) -> dict[str, bytes]:
    files = template_files()
    policy = yaml.safe_load(files["caspian.yaml"])
    policy["spec"]["historyUrl"] = url
    files["caspian.yaml"] = yaml.safe_dump(policy).encode()
    return files


def jobs_of(rendered: dict[str, bytes]) -> dict[str, dict]:
    """Each rendered Job by its file (a Job's file holds that Job alone)."""
    jobs = {}
    for path, data in rendered.items():
        docs = list(yaml.safe_load_all(data))
        if len(docs) == 1 and docs[0].get("kind") == "Job":
            jobs[path] = docs[0]
    return jobs


def test_each_job_links_to_the_history_of_its_own_file() -> None:
    _, rendered, _ = decide_and_render(NOW, with_history_url(HISTORY))
    jobs = jobs_of(rendered)
    assert len(jobs) == 10
    for path, job in jobs.items():
        link = job["metadata"]["annotations"][ARGOCD_LINK]
        assert link == f"https://git.example.invalid/acme/fleet/commits/main/{path}"


def test_without_a_history_url_there_is_no_link() -> None:
    _, rendered, _ = decide_and_render(NOW)
    for job in jobs_of(rendered).values():
        assert not any(key.startswith("link.argocd") for key in job["metadata"]["annotations"])


def test_the_link_changes_only_the_annotation() -> None:
    _, plain, _ = decide_and_render(NOW)
    _, linked, _ = decide_and_render(NOW, with_history_url(HISTORY))
    assert sorted(plain) == sorted(linked)
    for path, job in jobs_of(linked).items():
        job["metadata"]["annotations"].pop(ARGOCD_LINK)
        assert job == yaml.safe_load(plain[path])
