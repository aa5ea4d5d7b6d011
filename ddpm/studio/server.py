"""``serve(cfg)``: load a melody checkpoint, bind the address, print the URL and serve the studio."""

import socket
from pathlib import Path

from omegaconf import DictConfig

from ddpm.errors import UserError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def load_studio(cfg: DictConfig, sampler_dir: str | Path):
    """The ``Studio`` for ``cfg.ckpt`` with the samplers of ``sampler_dir`` (``conf/sampler``)."""
    path = Path(cfg.ckpt)
    if not path.is_file():  # before the slow imports (Lightning): a typo answers at once
        raise UserError(
            f"ckpt={path}: no such file (expected a melody checkpoint: checkpoints/melody.ckpt as shipped, "
            "or ckpt=outputs/<run>/last.ckpt of a train.py run)"
        )
    from ddpm.sampling import load_checkpoint, resolve_device, restore
    from ddpm.studio.engine import Studio, load_samplers

    device = resolve_device(str(cfg.device))  # cpu, or a GPU this machine has
    ckpt = load_checkpoint(path)  # CheckpointError is a UserError
    module, codec = restore(ckpt, path)
    eval_dir = (ckpt["run_config"].get("data") or {}).get("dir")
    return Studio(module, codec, load_samplers(sampler_dir), cfg.get("sampler"), device, path.name, eval_dir)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one); ``UserError`` when that fails."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        raise UserError(f"host={host} port={port}: cannot listen there ({e.strerror or e})") from e
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def serve(cfg: DictConfig, sampler_dir: str | Path) -> None:
    """Serve the studio until interrupted (Ctrl-C)."""
    if not 1 <= cfg.max_upload_kb <= 64 * 1024:
        raise UserError(f"max_upload_kb={cfg.max_upload_kb}: expected 1 to 65536")
    from ddpm.sampling import check_paths

    check_paths(cfg)
    studio = load_studio(cfg, sampler_dir)
    import uvicorn

    from ddpm.studio.app import create_app

    sock = bind(cfg.host, int(cfg.port))  # before create_app makes out_dir: a refused address leaves nothing
    app = create_app(studio, cfg.out_dir, max_upload_bytes=int(cfg.max_upload_kb) * 1024)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"studio: {studio.name}, {studio.frames * 2} bars; files in {Path(cfg.out_dir).resolve()}", flush=True)
    if cfg.host not in LOCAL_HOSTS:
        print(f"warning: listening on {cfg.host}: anyone who can reach this machine can use the studio", flush=True)
    print(f"studio running at http://{shown}:{port}/  (Ctrl-C stops it)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
