"""The studio's web app (FastAPI): the page, its JSON API, and downloads from the output folder.

    GET  /                         the page (static files from ddpm/studio/static; nothing from a CDN)
    GET  /api/info                 the model: bars, tempo, samplers, limits
    GET  /api/eval                 the run's eval tunes (titles)
    POST /api/melodies             upload a .mid (multipart ``file``, optional ``track``) -> a melody to start from
    POST /api/melodies/eval/{i}    eval tune i -> a melody to start from
    POST /api/generate, /api/infill, /api/interpolate   -> 202 {"job": id}
    GET  /api/jobs/{id}            progress, then the result (melodies with MIDI and WAV links)
    GET  /files/{folder}/{name}    a file the studio wrote (only there)

Bad input answers 400 (413 for a body over the upload limit) with ``{"detail": message}``.
"""

import contextlib
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from ddpm.errors import UserError
from ddpm.studio.engine import Studio
from ddpm.studio.limits import BodyLimit
from ddpm.studio.outputs import resolve_download
from ddpm.studio.service import GenerateRequest, InfillRequest, InterpolateRequest, StudioService

STATIC = Path(__file__).parent / "static"


def create_app(studio: Studio, out_dir: str | Path, max_upload_bytes: int = 512 * 1024) -> FastAPI:
    """The app serving ``studio``; every request's files go to a new folder under ``out_dir``."""
    service = StudioService(studio, out_dir, max_upload_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.jobs.shutdown()

    app = FastAPI(title="ddpm-music studio", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes + 64 * 1024)  # the multipart envelope on top
    app.add_exception_handler(UserError, user_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.get("/api/info")(service.info)
    app.get("/api/eval")(service.eval_list)
    app.post("/api/melodies/eval/{index}")(service.add_eval)

    @app.post("/api/melodies")
    def upload(file: Annotated[UploadFile, File()], track: Annotated[int | None, Form(ge=0)] = None):
        name = Path(file.filename or "upload.mid").name
        data = file.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"{name}: larger than the studio's upload limit of {max_upload_bytes // 1024} KB")
        return service.add_upload(name, data, track)

    @app.post("/api/generate", status_code=202)
    def generate(req: GenerateRequest):
        return {"job": service.generate(req).id}

    @app.post("/api/infill", status_code=202)
    def infill(req: InfillRequest):
        return {"job": service.infill(req).id}

    @app.post("/api/interpolate", status_code=202)
    def interpolate(req: InterpolateRequest):
        return {"job": service.interpolate(req).id}

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str):
        job = service.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"job {job_id!r}: no such job")
        return job.as_dict()

    @app.get("/files/{folder}/{name}")
    def download(folder: str, name: str):
        path = resolve_download(service.out_dir, folder, name)
        if path is None:
            raise HTTPException(404, "no such file in the studio's output folder")
        if path.suffix == ".mid":
            return FileResponse(path, media_type="audio/midi", filename=f"{folder}_{name}")
        return FileResponse(path, media_type="audio/wav")

    return app


async def user_error(request: Request, e: UserError) -> JSONResponse:
    tracks = getattr(e, "tracks", None)  # an upload's tracks (UploadError), so that the page can offer another
    return JSONResponse({"detail": " ".join(str(e).split()), **({"tracks": tracks} if tracks else {})}, status_code=400)


async def invalid_request(request: Request, e: RequestValidationError) -> JSONResponse:
    """The first invalid field as one line: ``n: Input should be less than or equal to 16 (got 100)``."""
    first = e.errors()[0]
    if first["type"] == "json_invalid":  # its loc is ("body", <character>), not a field
        where = f"character {first['loc'][-1]}" if len(first["loc"]) > 1 else "the start"
        return JSONResponse({"detail": f"request body: not valid JSON (at {where}); expected a JSON object"}, 400)
    where = ".".join(str(p) for p in first["loc"] if p != "body") or "request"
    got = f" (got {repr(first['input'])[:80]})" if "input" in first and first["type"] != "missing" else ""
    return JSONResponse({"detail": f"{where}: {first['msg']}{got}"}, status_code=400)
