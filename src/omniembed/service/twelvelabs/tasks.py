"""TwelveLabs' media embedding, run now (Embed v2) or as durable tasks (``/embed/tasks``, ``/embed-v2/tasks``).

- **One plan, three faces.** A ``MediaPlan`` says what to embed (a video, an audio clip or an image, by URL or
  by a file), with which models, which options (``visual``, ``audio``) and scopes (``clip``, and the whole
  input: ``video`` in v1, ``asset`` in v2), the clip length and the offsets. ``run_plan`` embeds it and gives
  the neutral result that ``v1_task``/``v2_task`` (and Embed v2's sync answer) shape in each API's terms.
- **Durable.** A task is a job in the FES job store (``service/jobs.py``): task ``twelvelabs-embed`` (v1) or
  ``twelvelabs-embed-v2``; its payload is the plan. It runs once across servers under a lease, is resumed
  by another server (or the restarted one) when its server dies, reports progress, and is shown only to the
  API key that created it. An uploaded file is kept under ``DATA_DIR/twelvelabs-uploads`` until its task's
  outcome is committed to the store, so a server that dies at any point before then leaves a task the
  restarted server (or another) runs again from the file; servers sharing a PostgreSQL store need a shared
  ``DATA_DIR`` for uploads (URLs work anywhere).
- **Uploads are removed after the commit, or swept.** A task's upload is removed once the store shows the
  task finished, never before. A server that dies between the commit and the removal, or a store that is
  down when the server checks, leaves a file that the sweep removes: at start and every
  ``SWEEP_EVERY_SEC``, every upload older than ``UPLOAD_GRACE_SEC`` whose task is finished, expired or
  absent (an upload whose task was never created, say) goes. The upload folder belongs to its job store.
- **Models.** A Marengo name maps video frames and images to the joint model where there is one, else to
  the default image model, and audio to the default audio model; an omniembed name serves what it embeds.
  Every answer names the serving models in ``X-OmniEmbed-Model``.
- **Video clips.** Frames are pooled per clip of ``clip_sec`` seconds from the start offset to the end
  offset (or the end of the video); the whole-video vector pools every frame in that span.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from fastapi import Request
from sqlalchemy import func, select

from omniembed.contract import Options
from omniembed.embedding import Embedding, Modality
from omniembed.errors import ModelNotFound, OmniEmbedError
from omniembed.service.errors import public_message
from omniembed.service.jobs import Handler, jobs, key_hash
from omniembed.service.twelvelabs.embed import joint_warning, model_for, resolve_joint

if TYPE_CHECKING:
    from omniembed.service.state import ServiceState

__all__ = ["MODEL_HEADER", "TASK_V1", "TASK_V2", "MediaPlan", "TwelveLabsFace", "run_plan", "v1_task", "v2_task"]

log = logging.getLogger(__name__)
MODEL_HEADER = "X-OmniEmbed-Model"
TASK_V1 = "twelvelabs-embed"
TASK_V2 = "twelvelabs-embed-v2"
STATUS = {"starting": "processing", "running": "processing", "complete": "ready", "failed": "failed"}
"""Job status -> TwelveLabs task status."""
UNFINISHED = ("starting", "running")
SWEEP_EVERY_SEC = 300.0
"""How often the upload folder is swept of files whose task is finished, expired or absent."""
UPLOAD_GRACE_SEC = 900.0
"""A file younger than this is never swept: its task may not be in the store yet (it is saved first)."""


@dataclass
class MediaPlan:
    """What a media embedding does; stored as the task's payload (``asdict``)."""

    model_name: str
    input_type: str  # video | audio | image
    models: dict[str, str]  # embedding option (visual, audio) -> the model that serves it
    scopes: list[str]  # clip and/or the whole input ("video" in v1, "asset" in v2)
    url: str | None = None
    upload: str | None = None  # a file name under the face's upload folder
    filename: str | None = None  # the client's own file name
    clip_sec: float = 6.0
    start_sec: float = 0.0
    end_sec: float | None = None
    defaulted_audio: bool = False  # audio was not asked for: a video without a sound track is embedded without it

    @property
    def options(self) -> list[str]:
        return list(self.models)


@dataclass
class TwelveLabsFace:
    """The TwelveLabs face's own state: the joint model, the upload folder and the task handlers."""

    state: ServiceState
    joint: str | None = None
    resolved: asyncio.Event = field(default_factory=asyncio.Event)
    sweep_every_sec: float = SWEEP_EVERY_SEC
    upload_grace_sec: float = UPLOAD_GRACE_SEC
    _cleanups: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def uploads(self) -> Path:
        return self.state.settings.data_dir / "twelvelabs-uploads"

    async def start(self) -> None:
        """The face's background work, until cancelled (the server's shutdown): sweep the upload folder now
        and every ``sweep_every_sec``, and resolve the joint model (off the event loop; warn when there is
        none)."""
        sweeping = asyncio.get_running_loop().create_task(self._sweep_forever(), name="twelvelabs-upload-sweep")
        try:
            await self._resolve()
            await sweeping
        finally:
            sweeping.cancel()
            for cleanup in list(self._cleanups):
                cleanup.cancel()

    async def _resolve(self) -> None:
        try:
            self.joint = await self.state.require_batcher().run_sync(resolve_joint, self.state.engine)
        except Exception:  # the server stays up on the per-modality models
            log.exception("resolving OMNIEMBED_JOINT_MODEL failed")
            self.joint = None
        if self.joint is None:
            logging.getLogger("omniembed.service").warning(joint_warning(self.state.settings))
        else:
            logging.getLogger("omniembed.service").info("Marengo names map text, images and video to %s", self.joint)
        self.resolved.set()

    async def joint_model(self) -> str | None:
        await self.resolved.wait()
        return self.joint

    def model(self, model_name: str, modality: Modality) -> str:
        """The canonical name of the served model for ``modality`` under ``model_name`` (in memory only)."""
        return self.serving(model_for(model_name, modality, self.state.settings, self.joint), modality)

    def serving(self, name: str, modality: Modality) -> str:
        """The canonical name of the served model ``name``, which must embed ``modality``: a model that does
        not is not found for it (404 ``resource_not_exist``, as a name with no model is), since whether a
        name serves a modality depends on this server's models, which no request schema can say."""
        spec = self.state.engine.served_spec(name, modality)
        if modality not in spec.modalities:
            what = "images or video frames" if modality is Modality.IMAGE else str(modality)
            raise ModelNotFound(f"model {spec.name!r} does not embed {what}; name a model that does, or a "
                                "Marengo name", param="model_name", model=spec.name)
        return spec.name

    def handlers(self) -> dict[str, Handler]:
        return {TASK_V1: self._run_task, TASK_V2: self._run_task}

    # -- durable tasks --------------------------------------------------------------------------------
    async def save_upload(self, data: bytes | BinaryIO) -> str:
        """Keep a task's file (bytes, or an open file copied in chunks) until the task has run; its name."""
        name = f"{uuid.uuid4().hex}.bin"
        await asyncio.to_thread(self._write_upload, name, data)
        return name

    def _write_upload(self, name: str, data: bytes | BinaryIO) -> None:
        self.uploads.mkdir(parents=True, exist_ok=True)
        with (self.uploads / name).open("wb") as out:
            if isinstance(data, bytes):
                out.write(data)
            else:
                shutil.copyfileobj(data, out, 1 << 20)

    async def create_task(self, task: str, plan: MediaPlan, request: Request) -> str:
        return await self.state.submit_job(request, task, next(iter(plan.models.values())), False, asdict(plan))

    async def _run_task(self, row: dict[str, Any], progress: Any) -> dict[str, Any]:
        plan = MediaPlan(**json.loads(row["payload"]))
        source: Any = plan.url
        if plan.upload is not None:
            path = self.uploads / plan.upload
            try:
                source = await asyncio.to_thread(path.read_bytes)
            except FileNotFoundError:
                return {"error": {"code": "resource_not_exist", "message": "the uploaded file of this task is not "
                                  "on this server (servers sharing a job store need a shared OMNIEMBED_DATA_DIR)"}}
            self._drop_after_commit(row["id"], plan.upload)
        try:
            result = await run_plan(self.state, plan, source, progress, job=True)
        except OmniEmbedError as exc:
            return {"error": {"code": exc.code, "message": public_message(exc.at_index(None))}}
        return {"result": result}  # any other exception: recorded as the task's internal error by the runner

    def _drop_after_commit(self, job_id: str, upload: str) -> None:
        """Remove ``upload`` once the job runner has recorded this task's outcome: when the asyncio task that
        runs this handler (and then commits what it returns) has ended, and only if the store then shows the
        task finished. A task put back in the queue (a stopping server, a lost lease, a store that could not
        take the outcome) keeps its file and runs again from it; a check that fails leaves it to the sweep."""
        running = asyncio.current_task()
        if running is None:  # not under the job runner: the sweep removes it
            return

        def ended(_task: asyncio.Task[Any]) -> None:
            cleanup = asyncio.get_running_loop().create_task(self._drop_if_finished(job_id, upload))
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)

        running.add_done_callback(ended)

    async def _drop_if_finished(self, job_id: str, upload: str) -> None:
        try:
            if await asyncio.to_thread(self._finished, job_id):
                await asyncio.to_thread(self._unlink, upload)
        except Exception:  # the store is down: the sweep removes the file once the task shows finished
            log.warning("task %s: could not check that its outcome was saved; its upload is swept later", job_id,
                        exc_info=True)

    def _finished(self, job_id: str) -> bool:
        """Whether the store shows ``job_id`` finished, expired or gone (not queued, not running)."""
        with self.state.store.db.connect() as conn:
            status = conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar_one_or_none()
        return status not in UNFINISHED

    def _unlink(self, upload: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.uploads / upload).unlink()

    def sweep_uploads(self) -> int:
        """Remove the uploads older than ``upload_grace_sec`` whose task is finished, expired or absent;
        returns how many went. Reads the store (raises while it is down) and the disk: call it off the loop."""
        folder = self.uploads
        if not folder.is_dir():
            return 0
        cutoff = time.time() - self.upload_grace_sec
        old = []
        for path in folder.iterdir():
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile (its task finished)
                if path.is_file() and path.stat().st_mtime < cutoff:
                    old.append(path)
        if not old:
            return 0
        where = jobs.c.task.in_((TASK_V1, TASK_V2)) & jobs.c.status.in_(UNFINISHED)
        with self.state.store.db.connect() as conn:
            payloads = conn.execute(select(jobs.c.payload).where(where)).scalars().all()
        needed = {json.loads(p).get("upload") for p in payloads}
        removed = 0
        for path in old:
            if path.name not in needed:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
        return removed

    async def _sweep_forever(self) -> None:
        while True:
            try:
                removed = await asyncio.to_thread(self.sweep_uploads)
                if removed:
                    log.info("removed %d upload(s) of finished, expired or absent TwelveLabs tasks", removed)
            except Exception:  # the store or the disk is unavailable for now: the next sweep retries
                log.warning("sweeping the TwelveLabs upload folder failed; retrying in %g s", self.sweep_every_sec,
                            exc_info=True)
            await asyncio.sleep(self.sweep_every_sec)

    async def get_task(self, task: str, task_id: str, request: Request) -> dict[str, Any] | None:
        return await self.state.visible_job(request, task, task_id)

    async def list_tasks(self, task: str, request: Request, *, page: int, limit: int, status: str | None,
                         started_at: float | None, ended_at: float | None) -> tuple[list[dict[str, Any]], int]:
        statuses = None if status is None else tuple(k for k, v in STATUS.items() if v == status)
        return await asyncio.to_thread(
            _page, self.state, task, key_hash(request, self.state.settings), statuses, started_at, ended_at,
            (page - 1) * limit, limit,
        )


def _page(state: ServiceState, task: str, key: str | None, statuses: tuple[str, ...] | None, after: float | None,
          before: float | None, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """One page of a key's tasks, newest first, and how many there are (expired ones left out)."""
    where = (jobs.c.task == task) & (jobs.c.expires_at.is_(None) | (jobs.c.expires_at >= time.time()))
    if key is not None:
        where &= jobs.c.key_hash == key
    if statuses is not None:
        where &= jobs.c.status.in_(statuses)
    if after is not None:
        where &= jobs.c.created_at >= after
    if before is not None:
        where &= jobs.c.created_at <= before
    with state.store.db.connect() as conn:
        total = int(conn.execute(select(func.count()).select_from(jobs).where(where)).scalar_one())
        rows = conn.execute(select(jobs).where(where).order_by(jobs.c.created_at.desc(), jobs.c.id)
                            .offset(offset).limit(limit)).mappings().all()
    return [dict(r) for r in rows], total


# -- running a plan -----------------------------------------------------------------------------------------


def _rows(e: Embedding) -> list[tuple[float, float, list[float]]]:
    segments = list(getattr(e.meta, "segments", None) or [])
    data = e.data if e.data.ndim == 2 else e.data[None, :]
    if not segments:
        return []
    return [(float(s.start_sec), float(s.end_sec), row.tolist()) for s, row in zip(segments, data, strict=True)]


def _segments(e: Embedding, option: str, scopes: list[str], whole: str) -> list[dict[str, Any]]:
    rows = _rows(e)
    out: list[dict[str, Any]] = []
    if "clip" in scopes:
        out += [{"option": option, "scope": "clip", "start": s, "end": t, "vector": v} for s, t, v in rows]
    if whole in scopes:
        start, end = (rows[0][0], rows[-1][1]) if rows else (None, None)
        out.append({"option": option, "scope": whole, "start": start, "end": end, "vector": e.vector.tolist()})
    return out


async def _engine(state: ServiceState, model: str, modality: Modality, source: Any, **options: Any) -> Embedding:
    """One video or audio input through ``Engine.run`` on the batcher's media thread (not the inference
    thread, which the request queues need); its error is raised."""
    call = functools.partial(state.engine.run, model, modality, [source], Options(allow_paths=False, **options),
                             errors="return")
    result = (await state.require_batcher().run_media(call))[0]
    if isinstance(result, OmniEmbedError):
        raise result.at_index(None)
    assert isinstance(result, Embedding)
    return result


async def run_plan(
    state: ServiceState, plan: MediaPlan, source: Any, progress: Any = None, *, job: bool = False
) -> dict[str, Any]:
    """Embed ``source`` (a URL or the file's bytes) as ``plan`` says: ``{segments, duration, models}``, each
    segment ``{option, scope, start, end, vector}``. ``progress``: an async callback given 0..1. ``job``: a
    durable task (no client waits): an image goes through the batcher's job lane, which waits its turn
    instead of answering ``too_many_requests`` or the request deadline."""
    whole = "video" if plan.input_type == "video" and "video" in plan.scopes else "asset"
    segments: list[dict[str, Any]] = []
    served: list[str] = []
    steps = len(plan.models)
    for k, (option, model) in enumerate(plan.models.items()):
        if plan.input_type == "image":
            batcher = state.require_batcher()
            result = (await batcher.embed(model, Modality.IMAGE, [source], job=job))[0]
            if isinstance(result, OmniEmbedError):
                raise result.at_index(None)
            segments.append({"option": option, "scope": whole, "start": None, "end": None,
                             "vector": result.vector.tolist()})
        elif plan.input_type == "audio":
            e = await _engine(state, model, Modality.AUDIO, source, segment_sec=plan.clip_sec,
                              start_offset_sec=plan.start_sec)
            segments += _segments(e, "audio", plan.scopes, whole)
        else:
            try:
                e = await _engine(state, model, Modality.VIDEO, source, segment_sec=plan.clip_sec,
                                  start_offset_sec=plan.start_sec, end_offset_sec=plan.end_sec,
                                  embedding_option=option)
            except OmniEmbedError as exc:
                if option == "audio" and plan.defaulted_audio and exc.code == "input_unreadable":
                    continue  # no sound track to embed, and the client did not ask for it
                raise
            segments += _segments(e, option, plan.scopes, whole)
        served.append(model)
        if progress is not None:
            await progress((k + 1) / steps)
    ends = [s["end"] for s in segments if s["end"] is not None and s["option"] == "visual"]
    ends = ends or [s["end"] for s in segments if s["end"] is not None]
    duration = max(ends) if ends else None  # the end of the embedded span (the frames' end, or end_sec)
    return {"segments": segments, "duration": duration, "models": list(dict.fromkeys(served))}


# -- TwelveLabs' shapes -------------------------------------------------------------------------------------


def _time(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def served_models(row: dict[str, Any]) -> list[str]:
    if row["status"] == "complete":
        return list(json.loads(row["result"]).get("models") or [])
    return list(dict.fromkeys(json.loads(row["payload"])["models"].values()))


def _input(plan: MediaPlan) -> dict[str, Any]:
    return {"input_url": plan.url} if plan.url else {"input_filename": plan.filename or "upload"}


def v1_task(row: dict[str, Any], *, segments: bool, options: list[str] | None = None) -> dict[str, Any]:
    """A v1 task (``/embed/tasks``) as TwelveLabs shows it: its status, its video's metadata and, with
    ``segments``, the segments of the ``options`` asked for (all by default)."""
    plan = MediaPlan(**json.loads(row["payload"]))
    result = json.loads(row["result"]) if row["status"] == "complete" else None
    metadata: dict[str, Any] = {**_input(plan), "video_clip_length": plan.clip_sec,
                                "video_embedding_scope": plan.scopes, "video_embedding_option": plan.options}
    if result is not None:
        metadata["duration"] = result["duration"]
    body: dict[str, Any] = {
        "_id": row["id"], "model_name": plan.model_name, "status": STATUS[row["status"]],
        "created_at": _time(row["created_at"]), "updated_at": _time(row["finished_at"] or row["started_at"]
                                                                     or row["created_at"]),
        "video_embedding": {"metadata": metadata}, "progress": _progress(row),
    }
    if segments and result is not None:
        body["video_embedding"]["segments"] = [
            {"float": s["vector"], "start_offset_sec": s["start"], "end_offset_sec": s["end"],
             "embedding_scope": s["scope"], "embedding_option": s["option"]}
            for s in result["segments"] if not options or s["option"] in options
        ]
    if row["status"] == "failed":
        body["error"] = json.loads(row["error"])
    return body


def _progress(row: dict[str, Any]) -> float:
    if row["status"] in ("complete", "failed"):
        return 1.0
    return float(row.get("progress") or 0.0)


def v2_data(result: dict[str, Any], input_type: str) -> list[dict[str, Any]]:
    """Embed v2's ``data``: one entry per segment (the whole input's scope is ``asset``)."""
    out = []
    for s in result["segments"]:
        entry: dict[str, Any] = {"embedding": s["vector"]}
        if input_type in ("video", "audio"):
            entry |= {"embedding_option": s["option"], "embedding_scope": "clip" if s["scope"] == "clip" else "asset",
                      "start_sec": s["start"], "end_sec": s["end"]}
        out.append(entry)
    return out


def v2_metadata(plan: MediaPlan, result: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"input_type": plan.input_type, **_input(plan)}
    if plan.input_type in ("video", "audio"):
        meta |= {"embedding_options": plan.options, "embedding_scopes": plan.scopes,
                 "duration": result["duration"] or 0.0, "start_offset_sec": plan.start_sec,
                 "end_offset_sec": plan.end_sec if plan.end_sec is not None else result["duration"]}
        if plan.input_type == "video":
            meta["clip_length"] = plan.clip_sec
    return meta


def v2_task(row: dict[str, Any], *, full: bool) -> dict[str, Any]:
    """A v2 task (``/embed-v2/tasks``): with ``full``, as ``retrieve`` shows it (data once ready), else as
    a list item (its metadata only)."""
    plan = MediaPlan(**json.loads(row["payload"]))
    result = json.loads(row["result"]) if row["status"] == "complete" else None
    body: dict[str, Any] = {
        "_id": row["id"], "model_name": plan.model_name, "status": STATUS[row["status"]],
        "created_at": _time(row["created_at"]),
        "updated_at": _time(row["finished_at"] or row["started_at"] or row["created_at"]), "progress": _progress(row),
    }
    if full:
        body["data"] = v2_data(result, plan.input_type) if result is not None else None
        if result is not None:
            body["metadata"] = v2_metadata(plan, result)
    elif result is not None:
        meta = v2_metadata(plan, result)
        if plan.input_type == "video":
            body["video_embedding"] = {"metadata": {**_input(plan), "video_clip_length": plan.clip_sec,
                                                    "video_embedding_scope": plan.scopes,
                                                    "video_embedding_option": plan.options,
                                                    "duration": meta["duration"]}}
        elif plan.input_type == "audio":
            body["audio_embedding"] = {"metadata": {**_input(plan), "audio_embedding_option": plan.options,
                                                    "audio_embedding_scope": plan.scopes,
                                                    "duration": meta["duration"]}}
    if row["status"] == "failed":
        body["error"] = json.loads(row["error"])
    return body


def page_info(page: int, limit: int, total: int) -> dict[str, int]:
    return {"limit_per_page": limit, "page": page, "total_page": max(1, -(-total // limit)), "total_results": total}
