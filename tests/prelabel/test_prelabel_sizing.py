"""Automatic sizing of a pre-label job's model actors, and the runtime it reads, without
a Ray cluster.

Clusters are synthetic ``RaySession`` resources; jobs are real records in a
real SQLite store, so a stored config is read back exactly as a later run
reads it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from tiny_models import tiny_yolo_spec, write_model_spec

from engine.config import ConfigError, Settings, load_settings
from engine.prelabel.config import PrelabelConfig, load_prelabel_config
from engine.prelabel.job import create_prelabel_job, job_inputs
from engine.prelabel.pipeline import (
    ActorSizing,
    actor_pool_size,
    actor_sizing,
    auto_threads_per_actor,
    block_rows,
    check_resources,
    torch_threads,
)
from engine.prelabel.runtime import MAX_TEMP_DIR_CHARS, RaySession, cluster_address, ray_temp_dir
from engine.store import Store

AUTO_KEYS = ("num_model_actors", "actor_num_cpus", "torch_threads")
# What the job record held for every job created before sizing was automatic:
# the then-defaults, dumped in full.
LEGACY_STORED = {
    "batch_size": None,
    "num_model_actors": 1,
    "actor_num_cpus": 1.0,
    "torch_threads": None,
    "decode_num_cpus": 1.0,
    "decode_concurrency": None,
    "decode_memory_bytes": 1073741824,
    "decode_batch_size": 8,
    "rows_per_block": 32,
    "write_batch_size": 32,
    "max_pixels": None,
    "max_file_bytes": 268435456,
    "limit": None,
    "device": "auto",
    "precision": "auto",
    "mask_min_box_score": 0.25,
    "mask_multimask": None,
    "max_text_chars": 1000000,
}


def _cluster(cpus: float, gpus: float = 0.0, *, embedded: bool = True) -> RaySession:
    resources = {"CPU": cpus, "memory": 8.0 * 1024**3}
    if gpus:
        resources["GPU"] = gpus
    return RaySession(resources=resources, embedded=embedded)


@pytest.mark.parametrize(
    ("cpus", "gpus", "expected"),
    [
        # 2 cores: two single-threaded actors, one CPU left to decode (measured best)
        (2, 0, ActorSizing(2, 0.5, 0, 1, AUTO_KEYS)),
        # 16 cores: 4 actors x 4 threads, a quarter of the CPUs reserved for decode
        (16, 0, ActorSizing(4, 3.0, 0, 4, AUTO_KEYS)),
        # GPUs: one actor per GPU, 1 CPU each, torch's own thread count
        (32, 4, ActorSizing(4, 1.0, 1, None, AUTO_KEYS)),
    ],
)
def test_auto_sizing_follows_the_cluster(cpus: int, gpus: int, expected: ActorSizing) -> None:
    session = _cluster(cpus, gpus)
    sizing = actor_sizing(PrelabelConfig(), session)
    assert sizing == expected
    check_resources(PrelabelConfig(), session)  # an automatic sizing always fits


@pytest.mark.parametrize("cpus", [2, 3, 4, 5, 8, 12, 16, 24, 32, 48, 64, 96, 128])
@pytest.mark.parametrize("gpus", [0, 1, 4, 8])
def test_auto_sizing_leaves_decode_room_and_uses_every_core(cpus: int, gpus: int) -> None:
    session = _cluster(cpus, gpus)
    sizing = actor_sizing(PrelabelConfig(), session)
    check_resources(PrelabelConfig(), session)
    left_for_decode = cpus - sizing.num_actors * sizing.num_cpus
    assert left_for_decode >= PrelabelConfig().decode_num_cpus
    if gpus:
        assert (sizing.num_actors, sizing.num_gpus, sizing.torch_threads) == (gpus, 1, None)
        return
    assert sizing.num_gpus == 0 and sizing.torch_threads is not None
    assert sizing.torch_threads <= 4 and sizing.num_cpus <= sizing.torch_threads
    # the actors' threads cover the cores, with less than one actor's worth spare
    spare = cpus - sizing.num_actors * sizing.torch_threads
    assert 0 <= spare < sizing.torch_threads


def test_threads_per_actor_grow_with_the_machine() -> None:
    assert [auto_threads_per_actor(c) for c in (1, 2, 3, 4, 15, 16, 256)] == [1, 1, 1, 2, 2, 4, 4]


def test_device_cpu_on_a_gpu_cluster_sizes_for_cpus() -> None:
    sizing = actor_sizing(PrelabelConfig(device="cpu"), _cluster(16, 2))
    assert (sizing.num_actors, sizing.num_gpus, sizing.torch_threads) == (4, 0, 4)


def test_explicit_values_win_over_auto_one_key_at_a_time() -> None:
    session = _cluster(16)
    assert actor_sizing(PrelabelConfig(num_model_actors=2), session) == ActorSizing(
        2, 6.0, 0, 8, ("actor_num_cpus", "torch_threads")
    )
    assert actor_sizing(PrelabelConfig(actor_num_cpus=0.25), session) == ActorSizing(
        4, 0.25, 0, 4, ("num_model_actors", "torch_threads")
    )
    # threads given: as many actors as fill the cores
    assert actor_sizing(PrelabelConfig(torch_threads=1), session) == ActorSizing(
        16, 0.75, 0, 1, ("num_model_actors", "actor_num_cpus")
    )
    explicit = PrelabelConfig(num_model_actors=3, actor_num_cpus=2.0, torch_threads=5)
    assert actor_sizing(explicit, _cluster(2, 4)) == ActorSizing(3, 2.0, 1, 5, ())
    assert "auto" not in actor_sizing(explicit, session).describe()
    assert "auto: num_model_actors" in actor_sizing(PrelabelConfig(), session).describe()


def test_explicit_values_that_do_not_fit_are_still_refused() -> None:
    with pytest.raises(ConfigError, match=r"2 model actor\(s\) x actor_num_cpus=2"):
        check_resources(PrelabelConfig(actor_num_cpus=2.0), _cluster(2))
    with pytest.raises(ConfigError, match="num_model_actors=5 but the cluster has 4 GPU"):
        check_resources(PrelabelConfig(num_model_actors=5), _cluster(32, 4))


def test_legacy_stored_config_runs_as_it_was_recorded() -> None:
    config = PrelabelConfig.model_validate(LEGACY_STORED)
    # keys added since get their defaults (job_inputs runs a job stored without an
    # executor on Ray, as it was recorded)
    assert config.model_dump(mode="json") == {
        **LEGACY_STORED,
        "executor": "auto",
        "local_max_items": 512,
        "local_workers": None,
        "tta": None,
        "rank_policy": None,
    }
    # 1 actor x 1 CPU, all the cluster's CPUs as torch threads: the pre-auto rule
    assert actor_sizing(config, _cluster(2)) == ActorSizing(1, 1.0, 0, 2, ("torch_threads",))
    assert actor_sizing(config, _cluster(16)) == ActorSizing(1, 1.0, 0, 16, ("torch_threads",))
    assert actor_sizing(config, _cluster(32, 4)) == ActorSizing(1, 1.0, 1, None, ("torch_threads",))
    check_resources(config, _cluster(2))


TINY_SPEC = tiny_yolo_spec("tiny", imgsz_px=128, max_det=10, batch_size=4)


@pytest.fixture
def tiny_settings(tmp_path: Path) -> Settings:
    write_model_spec(tmp_path / "configs", TINY_SPEC)
    return load_settings(
        data_dir=tmp_path / "data", data_roots=[tmp_path], config_dir=tmp_path / "configs"
    )


def test_stored_jobs_keep_concrete_values_and_auto_stays_auto(
    tiny_settings: Settings, tmp_path: Path
) -> None:
    store = Store(tiny_settings.resolved_database_url)
    concrete = tmp_path / "concrete.yaml"
    concrete.write_text("num_model_actors: 1\nactor_num_cpus: 1.0\n", encoding="utf-8")
    old = create_prelabel_job(store, tiny_settings, model_name="tiny", job_config_path=concrete)
    auto = tmp_path / "auto.yaml"
    auto.write_text("num_model_actors: auto\nactor_num_cpus: AUTO\n", encoding="utf-8")
    new = create_prelabel_job(store, tiny_settings, model_name="tiny", job_config_path=auto)
    old_config = job_inputs(store.get_job(old.job_id)).config
    new_config = job_inputs(store.get_job(new.job_id)).config
    store.close()
    assert get_job_config_sizing_keys(old_config) == (1, 1.0, None)
    assert get_job_config_sizing_keys(new_config) == (None, None, None)
    # the auto job is sized where it runs, the concrete one is not
    assert actor_sizing(old_config, _cluster(2)).num_actors == 1
    assert actor_sizing(new_config, _cluster(2)).num_actors == 2
    assert actor_sizing(new_config, _cluster(64, 8)).num_actors == 8


def get_job_config_sizing_keys(config: PrelabelConfig) -> tuple[object, ...]:
    return tuple(getattr(config, key) for key in AUTO_KEYS)


def test_auto_in_yaml_and_bad_values_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("num_model_actors: Auto\ntorch_threads: '3'\n", encoding="utf-8")
    loaded = load_prelabel_config(path)
    assert (loaded.num_model_actors, loaded.torch_threads) == (None, 3)
    path.write_text("num_model_actors: many\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"key 'num_model_actors'.*positive number or 'auto'"):
        load_prelabel_config(path)
    path.write_text("actor_num_cpus: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"key 'actor_num_cpus'"):
        load_prelabel_config(path)


def test_small_jobs_get_small_blocks_so_no_actor_finishes_alone() -> None:
    # 96 items on 2 actors: blocks of 8 rows (12 blocks), not 3 of 32
    assert block_rows(32, 8, num_items=96, num_actors=2) == 8
    assert block_rows(32, 8, num_items=200, num_actors=2) == 16
    # never under one model batch, never over rows_per_block
    assert block_rows(32, 8, num_items=3, num_actors=4) == 8
    assert block_rows(32, 8, num_items=1_000_000, num_actors=2) == 32
    assert block_rows(10, 4) == 12


def test_no_more_actors_start_than_there_are_blocks() -> None:
    assert actor_pool_size(4, num_items=8, rows=8) == 1
    assert actor_pool_size(4, num_items=17, rows=8) == 3
    assert actor_pool_size(4, num_items=1000, rows=8) == 4
    assert actor_pool_size(2, num_items=0, rows=8) == 1


# -- the runtime: Ray's temp dir, the cluster address, resources -------------------


def test_ray_temp_dir_stays_short_for_unix_sockets(tmp_path: Path) -> None:
    short = load_settings(data_dir=Path("/tmp/le"))
    assert ray_temp_dir(short) == Path("/tmp/le/ray")
    deep = load_settings(data_dir=tmp_path / ("x" * 60))
    path = ray_temp_dir(deep)
    assert len(str(path)) <= MAX_TEMP_DIR_CHARS and path != ray_temp_dir(short)
    assert path == ray_temp_dir(deep)  # stable per data dir


def test_cluster_address_prefers_settings_then_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster_address(load_settings()) is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert cluster_address(load_settings()) == "10.0.0.1:6379"
    assert cluster_address(load_settings(ray_address="head:6379")) == "head:6379"


def test_check_resources_refuses_actors_that_starve_decode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    embedded = RaySession(resources={"CPU": 2.0}, embedded=True)
    check_resources(PrelabelConfig(actor_num_cpus=0.5, num_model_actors=2), embedded)
    with pytest.raises(ConfigError, match="actor_num_cpus"):
        check_resources(PrelabelConfig(actor_num_cpus=2.0), embedded)
    gpus = RaySession(resources={"CPU": 16.0, "GPU": 1.0}, embedded=True)
    with pytest.raises(ConfigError, match="1 GPU"):
        check_resources(PrelabelConfig(num_model_actors=2), gpus)
    remote = RaySession(resources={"CPU": 2.0}, embedded=False)
    with caplog.at_level(logging.WARNING):
        check_resources(PrelabelConfig(actor_num_cpus=2.0), remote)
    assert "may scale up" in caplog.text


def test_input_tables_hold_whole_blocks_of_whole_model_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from engine.prelabel import pipeline

    assert pipeline.block_rows(10, 4) == 12 and pipeline.block_rows(32, 8) == 32
    monkeypatch.setattr(pipeline, "BLOCKS_PER_TABLE", 2)
    todo = [{"item_id": f"i{k:03d}", "uri": f"/d/{k}.jpg"} for k in range(45)]
    tables = pipeline.input_tables(todo, rows=12)
    assert [table.num_rows for table in tables] == [24, 21]
    assert [row for table in tables for row in table.to_pylist()] == todo
    assert pipeline.input_tables([], 32) == []


def test_torch_threads_split_the_cpus_over_cpu_actors() -> None:
    cpu = RaySession(resources={"CPU": 8.0}, embedded=True)
    assert torch_threads(PrelabelConfig(num_model_actors=3), cpu) == 2
    assert torch_threads(PrelabelConfig(torch_threads=5), cpu) == 5
    gpu = RaySession(resources={"CPU": 8.0, "GPU": 2.0}, embedded=True)
    assert torch_threads(PrelabelConfig(), gpu) is None
