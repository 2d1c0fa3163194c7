"""A hostile or broken Hub: every answer is untrusted input (modelimport.identify.hub.answers).

Whatever the Hub sends, a lookup ends in an honest result: no_match, a pending lookup
(`hub_error`) or the bad candidate, file entry or field left out. It never raises, never
hangs, never puts a Hub-given name into a library path, and never says `verified` (or
`modified`) unless a real SHA256 comparison says so. The real huggingface_hub client talks to
the fake Hub over HTTP; `FakeHub.answer_raw` serves each hostile answer byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from cli import library_files
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import make_safetensors
from fakehub import FakeClock, FakeHub

from modelimport.identify.hub import (
    HubSession,
    LocalFile,
    LookupRequest,
    TrustLevel,
    settle_verification,
)

NAME = "Cool-Model-7B"
REPO = f"org/{NAME}"
FILE = f"{NAME}.safetensors"
WEIGHTS = b"cool weights " * 100
WEIGHTS_SHA = hashlib.sha256(WEIGHTS).hexdigest()


def raw_json(value: Any, **raw: str) -> str:
    """`value` as JSON text, then each `"@name"` replaced by raw JSON text (what json.dumps
    cannot write: a lone surrogate escape, 1e400)."""
    text = json.dumps(value)
    for name, replacement in raw.items():
        text = text.replace(json.dumps(f"@{name}"), replacement)
    return text


def identify(local: LocalFile | None = None, **session: Any):
    local = local or LocalFile(FILE, len(WEIGHTS))
    return HubSession(**session).identify(LookupRequest(NAME, (local,)))


def repo_answer(hub: FakeHub) -> dict[str, Any]:
    """The well-formed listing of REPO (which search finds), to spoil before serving it."""
    repo = hub.add_repo(REPO, {FILE: WEIGHTS}, downloads=10, tags=["llama"])
    return repo.info(blobs=True)


def serve_listing(hub: FakeHub, spoil) -> None:
    answer = repo_answer(hub)
    spoil(answer, answer["siblings"][0])
    hub.answer_raw("model_info", answer, repo=REPO)


# -- repo listings ----------------------------------------------------------------------------


# (what is wrong, how to spoil the answer and its one sibling, the honest trust level)
SPOILED_LISTINGS = [
    ("siblings is an object", lambda a, s: a.update(siblings={"x": 1}), TrustLevel.LOW),
    ("siblings is a string", lambda a, s: a.update(siblings="abc"), TrustLevel.LOW),
    ("a sibling is null", lambda a, s: a["siblings"].insert(0, None), TrustLevel.HIGH),
    ("a sibling is a string", lambda a, s: a["siblings"].insert(0, "x"), TrustLevel.HIGH),
    ("a sibling lacks rfilename", lambda a, s: a["siblings"].append({"size": 1}), TrustLevel.HIGH),
    ("rfilename is a number", lambda a, s: s.update(rfilename=7), TrustLevel.LOW),
    ("lfs is a string", lambda a, s: s.update(lfs="abc"), TrustLevel.HIGH),
    ("lfs is a list", lambda a, s: s.update(lfs=[1]), TrustLevel.HIGH),
    ("lfs lacks size", lambda a, s: s["lfs"].pop("size"), TrustLevel.HIGH),
    ("lfs sha256 is a number", lambda a, s: s["lfs"].update(sha256=12), TrustLevel.HIGH),
    ("id is missing", lambda a, s: a.pop("id"), TrustLevel.HIGH),
    ("id is a list", lambda a, s: a.update(id=["org", "x"]), TrustLevel.HIGH),
    ("downloads is a word", lambda a, s: a.update(downloads="many"), TrustLevel.HIGH),
    ("downloads is a list", lambda a, s: a.update(downloads=[1]), TrustLevel.HIGH),
    ("lastModified is a number", lambda a, s: a.update(lastModified=5), TrustLevel.HIGH),
    ("lastModified is a word", lambda a, s: a.update(lastModified="yesterday"), TrustLevel.HIGH),
    ("tags is a number", lambda a, s: a.update(tags=5), TrustLevel.HIGH),
    ("tags hold objects", lambda a, s: a.update(tags=["llama", {"a": 1}]), TrustLevel.HIGH),
    ("pipeline_tag is a list", lambda a, s: a.update(pipeline_tag=["x"]), TrustLevel.HIGH),
    ("transformersInfo is junk", lambda a, s: a.update(transformersInfo={"x": 1}), TrustLevel.HIGH),
    ("safetensors is junk", lambda a, s: a.update(safetensors={"x": 1}), TrustLevel.HIGH),
    ("evalResults is junk", lambda a, s: a.update(evalResults=[1]), TrustLevel.HIGH),
    ("providers is a string", lambda a, s: a.update(inferenceProviderMapping="x"), TrustLevel.HIGH),
]


@pytest.mark.parametrize(
    "spoil, trust", [c[1:] for c in SPOILED_LISTINGS], ids=[c[0] for c in SPOILED_LISTINGS]
)
def test_a_spoiled_listing_drops_what_it_cannot_use(fake_hub: FakeHub, spoil, trust) -> None:
    serve_listing(fake_hub, spoil)
    result = identify()
    assert result.hub_error is None
    assert (result.trust, result.repo_id) == (trust, REPO)
    assert set(result.matched_files.values()) <= {FILE}


@pytest.mark.parametrize(
    "repo_id",
    ["../../etc", "org/x/../../y", "org/x\n", "a" * 300, "ö/x"],
    ids=["dotdot", "inner-dotdot", "newline", "long", "unicode"],
)
def test_a_listing_naming_itself_oddly_keeps_the_repo_asked_for(
    fake_hub: FakeHub, repo_id: str
) -> None:
    serve_listing(fake_hub, lambda a, s: a.update(id=repo_id))
    result = identify()
    assert (result.trust, result.repo_id) == (TrustLevel.HIGH, REPO)
    assert result.metadata["official_name"] == NAME


@pytest.mark.parametrize(
    "size", ["1300", -1, 1300.5, 10**40], ids=["string", "negative", "float", "huge"]
)
def test_a_broken_size_is_no_evidence_of_a_modified_file(fake_hub: FakeHub, size) -> None:
    def spoil(answer: dict, sibling: dict) -> None:
        sibling.update(size=size)
        del sibling["lfs"]

    serve_listing(fake_hub, spoil)
    result = identify()
    assert result.trust is TrustLevel.LOW and result.match_method == "filename_fuzzy"
    assert not result.metadata["hash_mismatch"]


def test_an_infinite_size_is_no_evidence_of_a_modified_file(fake_hub: FakeHub) -> None:
    repo_answer(fake_hub)
    body = raw_json({"id": REPO, "siblings": [{"rfilename": FILE, "size": "@inf"}]}, inf="1e400")
    fake_hub.answer_raw("model_info", body, repo=REPO)
    result = identify()
    assert result.trust is TrustLevel.LOW and not result.metadata["hash_mismatch"]


@pytest.mark.parametrize(
    "sha256", ["z" * 64, "ab", WEIGHTS_SHA + "00", f" {WEIGHTS_SHA[1:]}"],
    ids=["not-hex", "short", "long", "padded"],
)
def test_a_malformed_sha256_is_never_compared(fake_hub: FakeHub, sha256: str) -> None:
    serve_listing(fake_hub, lambda a, s: s["lfs"].update(sha256=sha256))
    result = identify()
    assert (result.trust, result.expected_sha256) == (TrustLevel.HIGH, {})
    assert not result.pending_verification
    # the import's copy stream hashed the file: a garbage hash must not make it "modified"
    settled = settle_verification(result, {FILE: WEIGHTS_SHA})
    assert settled.trust is TrustLevel.HIGH and not settled.metadata["hash_mismatch"]


def test_verified_only_when_the_listed_sha256_really_matches(fake_hub: FakeHub) -> None:
    serve_listing(fake_hub, lambda a, s: s["lfs"].update(sha256=WEIGHTS_SHA.upper()))
    assert identify(LocalFile(FILE, len(WEIGHTS), sha256=WEIGHTS_SHA)).trust is TrustLevel.VERIFIED
    other = identify(LocalFile(FILE, len(WEIGHTS), sha256="0" * 64), refresh=True)
    assert other.trust is TrustLevel.MODIFIED


@pytest.mark.parametrize(
    "path",
    [f"../{FILE}", f"/{FILE}", f"sub/../{FILE}", f"sub//{FILE}", f"sub\\{FILE}", f"{FILE}\x00",
     f"{FILE}\n", "x" * 5000 + f"/{FILE}"],
    ids=["dotdot", "absolute", "inner-dotdot", "empty-part", "backslash", "nul", "newline", "long"],
)
def test_an_unsafe_repo_path_is_left_out(fake_hub: FakeHub, path: str) -> None:
    serve_listing(fake_hub, lambda a, s: s.update(rfilename=path))
    result = identify()
    assert result.trust is TrustLevel.LOW  # judged by the repo's name alone
    assert result.matched_files == {} and result.metadata["repo_files"] == []
    assert result.metadata["download_url"] is None


def test_a_lone_surrogate_in_a_path_is_left_out(fake_hub: FakeHub) -> None:
    repo_answer(fake_hub)
    siblings = [{"rfilename": "@path", "size": 1}]
    body = raw_json({"id": REPO, "siblings": siblings}, path=f'"\\ud800{FILE}"')
    fake_hub.answer_raw("model_info", body, repo=REPO)
    result = identify()
    assert result.trust is TrustLevel.LOW and result.metadata["repo_files"] == []


def test_unicode_and_nested_paths_are_kept(fake_hub: FakeHub) -> None:
    def spoil(answer: dict, sibling: dict) -> None:
        sibling.update(rfilename=f"weights/{FILE}")
        answer["siblings"].append({"rfilename": "模型/说明.md", "size": 3})

    serve_listing(fake_hub, spoil)
    result = identify()
    assert result.trust is TrustLevel.HIGH
    assert result.matched_files == {FILE: f"weights/{FILE}"}
    assert {"path": "模型/说明.md", "size": 3} in result.metadata["repo_files"]


def test_a_listing_of_300_000_files_is_capped(fake_hub: FakeHub) -> None:
    def spoil(answer: dict, sibling: dict) -> None:
        answer["siblings"] = [
            {"rfilename": f"{NAME}-{i}.safetensors", "size": i} for i in range(300_000)
        ]

    serve_listing(fake_hub, spoil)
    # Only the first 10,000 files are kept and scored (unbounded, scoring took ~6 s per
    # local file); how fast that is belongs to a benchmark, not to a test.
    result = identify(LocalFile(f"{NAME}-v2.safetensors", 10**9), timeout=30)
    assert result.trust is TrustLevel.LOW and len(result.metadata["repo_files"]) == 10_000


def test_odd_card_data_is_recorded_but_not_trusted(fake_hub: FakeHub) -> None:
    card = {"license": ["mit", "apache-2.0"], "base_model": {"name": "llama"}, "tags": "x"}
    serve_listing(fake_hub, lambda a, s: a.update(cardData=card, tags=["license:mit"]))
    result = identify()
    assert result.trust is TrustLevel.HIGH
    assert result.metadata["license"] == "mit"  # from the tags: a list is no license name
    assert result.metadata["base_model"] == {"name": "llama"}  # data, never a path
    for odd in ([1], "card", None):
        fake_hub.answer_raw("model_info", {"id": REPO, "cardData": odd}, repo=REPO)
        assert identify(refresh=True).metadata["card_data"] == {}


# -- answers that are not what was asked: a pending lookup -------------------------------------


WRONG_ANSWERS = [
    ("listing is an array", "model_info", [1, 2], "an array"),
    ("listing is null", "model_info", None, "null"),
    ("listing is a string", "model_info", '"name"', "a string"),
    ("search is an object", "search", {"models": []}, "an object"),
    ("search is null", "search", None, "null"),
    ("listing nests deeply", "model_info", "[" * 100_000 + "]" * 100_000, "not JSON"),
    ("search nests deeply", "search", "[" * 100_000 + "]" * 100_000, "not JSON"),
    ("search is cut off", "search", b'[{"id": "org/', "not JSON"),
    ("listing is empty", "model_info", b"", "not JSON"),
    ("search is an HTML page", "search", b"<html><body>Sign in to Wi-Fi</body></html>", "not JSON"),
    ("listing is not UTF-8", "model_info", b'{"id": "\xff\xfe"}', "not JSON"),
]


@pytest.mark.parametrize(
    "endpoint, body, why", [c[1:] for c in WRONG_ANSWERS], ids=[c[0] for c in WRONG_ANSWERS]
)
def test_an_answer_of_the_wrong_kind_leaves_the_lookup_pending(
    fake_hub: FakeHub, endpoint: str, body: Any, why: str
) -> None:
    repo_answer(fake_hub)
    fake_hub.answer_raw(endpoint, body, content_type="text/html")
    result = identify()
    assert result.trust is TrustLevel.NONE and result.repo_id is None
    assert result.hub_error and why in result.hub_error


def test_search_hits_that_are_not_repos_are_skipped(fake_hub: FakeHub) -> None:
    repo_answer(fake_hub)
    hits = ["org/x", None, {"downloads": 3}, {"id": ["org/x"]}, {"id": "org/x\n"},
            {"id": "../../etc/passwd"}, {"id": REPO, "downloads": "many", "createdAt": "?"}]
    fake_hub.answer_raw("search", hits)
    result = identify()
    assert (result.trust, result.repo_id, result.hub_error) == (TrustLevel.HIGH, REPO, None)
    assert [c.repo_id for c in result.candidates] == [REPO]
    assert [path for endpoint, path in fake_hub.log if endpoint == "model_info"] == [
        f"/api/models/{REPO}?blobs=true"
    ]


def test_infinite_downloads_in_a_search_hit_count_as_none(fake_hub: FakeHub) -> None:
    repo_answer(fake_hub)
    fake_hub.answer_raw("search", raw_json([{"id": REPO, "downloads": "@inf"}], inf="1e400"))
    result = identify()
    assert result.trust is TrustLevel.HIGH and result.candidates[0].downloads == 10


def test_a_huge_search_answer_costs_no_more_than_a_small_one(fake_hub: FakeHub) -> None:
    repo_answer(fake_hub)
    hits = [{"id": f"org/{NAME}-{i}", "downloads": i} for i in range(200_000)]
    fake_hub.answer_raw("search", [{"id": REPO, "downloads": 10**9}, *hits])
    result = identify(search_limit=5)
    assert result.repo_id == REPO and len(result.candidates) <= 5
    assert fake_hub.total <= 4


def test_an_answer_too_large_to_hold_leaves_the_lookup_pending(fake_hub: FakeHub) -> None:
    repo_answer(fake_hub)
    fake_hub.answer_raw("search", b"[" + b" " * (65 << 20) + b"]")
    result = identify(timeout=30)
    assert result.hub_error and "MiB" in result.hub_error


# -- slow, looping and rate-limiting answers: bounded ------------------------------------------


def test_a_hub_trickling_its_answer_times_out(fake_hub: FakeHub) -> None:
    repo_answer(fake_hub)
    fake_hub.answer_raw("search", b"[" + b" " * 200 + b"]", trickle=0.05)  # 10 s in all
    # Each byte comes well within the read timeout: only the deadline on the whole answer
    # ends it (else the answer would arrive, whole and valid, after 10 s).
    result = identify(timeout=0.5)
    assert result.hub_error and "did not answer" in result.hub_error


@pytest.mark.parametrize("endpoint", ["search", "model_info"])
def test_a_redirect_loop_leaves_the_lookup_pending(fake_hub: FakeHub, endpoint: str) -> None:
    repo_answer(fake_hub)
    loop = "/api/models" if endpoint == "search" else f"/api/models/{REPO}"
    fake_hub.answer_raw(endpoint, status=302, headers={"Location": loop})
    clock = FakeClock()
    result = identify(**clock.session())
    assert result.hub_error and "TooManyRedirects" in result.hub_error
    assert clock.slept == [] and fake_hub.total <= 2 + 20  # httpx follows at most 20


@pytest.mark.parametrize("retry_after", ["soon", "-5", "nan", "inf", "1e999", ""])
def test_a_429_with_an_unusable_retry_after_gives_up_at_once(
    fake_hub: FakeHub, retry_after: str
) -> None:
    repo_answer(fake_hub)
    fake_hub.answer_raw("search", {"error": "slow down"}, status=429,
                        headers={"Retry-After": retry_after}, times=1)
    clock = FakeClock()
    result = identify(**clock.session())
    assert clock.slept == []  # no wait it cannot justify, and no retry
    assert result.hub_error and "429" in result.hub_error


def test_a_429_with_an_http_date_retry_after_is_honoured(fake_hub: FakeHub) -> None:
    repo_answer(fake_hub)
    when = formatdate(time.time() + 6, usegmt=True)  # 5 to 6 s from now, whole seconds
    fake_hub.answer_raw("search", {"error": "slow down"}, status=429,
                        headers={"Retry-After": when}, times=1)
    clock = FakeClock()
    result = identify(**clock.session())
    assert (result.trust, result.hub_error) == (TrustLevel.HIGH, None)
    [waited] = clock.slept  # until that date (the clock the date is read with moved on a bit)
    assert 3 < waited <= 6


def test_a_429_with_a_past_http_date_retries_at_once(fake_hub: FakeHub) -> None:
    repo_answer(fake_hub)
    fake_hub.answer_raw("search", {}, status=429,
                        headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, times=1)
    clock = FakeClock()
    assert identify(**clock.session()).trust is TrustLevel.HIGH
    assert clock.slept == []


# -- end to end: the real CLI --------------------------------------------------------------------


def _hostile_listing(name: str, data: bytes, sha256: str) -> dict[str, Any]:
    """A listing whose one usable file is the real one, in a sea of hostile entries."""
    return {
        "id": "../../../../tmp/escape",
        "sha": ["not", "a", "sha"],
        "downloads": "lots",
        "tags": "llama",
        "pipeline_tag": ["text-generation"],
        "library_name": {"x": 1},
        "gated": {"manual": True},
        "lastModified": 12,
        "cardData": {"license": ["mit"], "base_model": {"x": 1}, "tags": "x"},
        "transformersInfo": {"nonsense": 1},
        "siblings": [
            None,
            "x",
            {"size": 5},
            {"rfilename": f"../../{name}", "size": len(data)},
            {"rfilename": f"/etc/{name}", "size": len(data)},
            {"rfilename": name + "\x00", "size": len(data)},
            {"rfilename": name, "size": len(data), "lfs": {"sha256": sha256, "size": len(data)}},
        ],
    }


def _model(folder: Path) -> tuple[Path, bytes]:
    path = make_safetensors(folder / "Evil-Model-7B.safetensors", {"w": ("F16", [16, 16])})
    return path, path.read_bytes()


def test_cli_import_and_lookup_survive_a_hostile_listing(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
) -> None:
    path, data = _model(tmp_path / "dl")
    fake_hub.add_repo("evil/Evil-Model-7B", {path.name: data})
    listing = _hostile_listing(path.name, data, hashlib.sha256(data).hexdigest())
    fake_hub.answer_raw("model_info", listing, repo="evil/Evil-Model-7B")

    looked = run_cli("lookup", path, "--json", env=fake_hub_env)
    assert looked.code == 0, looked.stderr
    [report] = looked.json["results"]
    assert (report["trust"], report["repo_id"]) == ("high_confidence", "evil/Evil-Model-7B")
    assert report["matched_files"] == {path.name: path.name}

    lib = tmp_path / "lib"
    run = run_cli("--library", lib, "import", path, "--yes", "--json", env=fake_hub_env)
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    model_dir = lib / result["model_id"]
    meta = json.loads((model_dir / "metadata.json").read_text())
    # verified: the copy stream's SHA256 equals the one well-formed listed hash
    assert (meta["trust_level"], meta["repo_id"]) == ("verified", "evil/Evil-Model-7B")
    assert [f["path"] for f in meta["hub"]["repo_files"]] == [path.name]
    assert all(p.resolve().is_relative_to(lib.resolve()) for p in library_files(lib))
    assert library_files(lib) == [model_dir / path.name, model_dir / "metadata.json"]


def test_cli_import_records_a_garbage_sha256_as_unverified_not_modified(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
) -> None:
    path, data = _model(tmp_path / "dl")
    listing = fake_hub.add_repo("evil/Evil-Model-7B", {path.name: data}).info(blobs=True)
    listing["siblings"][0]["lfs"]["sha256"] = "g" * 64
    fake_hub.answer_raw("model_info", listing, repo="evil/Evil-Model-7B")
    run = run_cli("--library", tmp_path / "lib", "import", path, "--yes", "--json",
                  env=fake_hub_env)
    assert run.code == 0, run.stderr
    meta = json.loads((tmp_path / "lib" / run.json["results"][0]["model_id"] / "metadata.json")
                      .read_text())
    assert (meta["trust_level"], meta["hash_mismatch"]) == ("high_confidence", False)


@pytest.mark.parametrize("body", [None, {"error": "x"}, b"<html>portal</html>"],
                         ids=["null", "object", "html"])
def test_cli_import_and_lookup_leave_a_wrong_search_answer_pending(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str], body: Any
) -> None:
    path, _ = _model(tmp_path / "dl")
    fake_hub.answer_raw("search", body)
    looked = run_cli("lookup", path, "--json", env=fake_hub_env)
    assert looked.code == 0, looked.stderr
    assert looked.json["results"][0]["status"].startswith("not looked up")
    run = run_cli("--library", tmp_path / "lib", "import", path, "--yes", "--json",
                  env=fake_hub_env)
    assert run.code == 0, run.stderr
    assert run.json["results"][0]["pending_online_lookup"] is True


def test_escape_sequences_from_the_hub_never_reach_the_terminal(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    path = make_safetensors(tmp_path / "Escape-Model-7B.safetensors", {"w": ("F16", [8, 8])})
    clear_and_title = "\x1b[2J\x1b[1A\x1b[2K\x1b]0;pwned\x07\x9b31m"
    fake_hub.add_repo(
        "org/Escape-Model-7B",
        {path.name: path.read_bytes()},
        downloads=3,
        pipeline_tag="text-generation" + clear_and_title,
        license="mit" + clear_and_title,
        tags=["x" + clear_and_title],
        card_data={"base_model": "org/base" + clear_and_title, "nested": [{"k": "\x1b[5m"}]},
    )
    for args in (["lookup", path], ["lookup", path, "--json"]):
        run = run_cli(*args, env=fake_hub_env)
        assert run.code == 0, run.stderr
        for stream in (run.stdout, run.stderr):
            assert "\x1b" not in stream and "\x07" not in stream and "\x9b" not in stream
    assert "mit" in run_cli("lookup", path, env=fake_hub_env).stdout
