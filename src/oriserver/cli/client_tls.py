"""``ori``'s TLS options: flags over ORI_TLS* variables, all checked before connecting."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from oriserver.config import env as envvars
from oriserver.config.env import ConfigError, EnvReader, optional_boolean, variable
from oriserver.config.transport import check_certificates, check_key_pair

TLS = variable(
    "ORI_TLS",
    "",
    "`ori` connects with TLS (`--tls`, `--no-tls`); when unset, a CA or client file implies it.",
    parse=optional_boolean,
    shown="false, unless a CA or client file is set",
)
CA_FILE = variable(
    "ORI_TLS_CA_FILE",
    "",
    "PEM CA bundle `ori` trusts for the server certificate (`--ca-file`).",
    parse=envvars.text,
    shown="the system's trusted roots",
)
CERT_FILE = variable(
    "ORI_TLS_CLIENT_CERT_FILE",
    "",
    "PEM certificate `ori` presents for mTLS (`--cert-file`).",
    parse=envvars.text,
)
KEY_FILE = variable(
    "ORI_TLS_CLIENT_KEY_FILE",
    "",
    "Unencrypted PEM key of that certificate (`--key-file`).",
    parse=envvars.text,
)
SERVER_NAME = variable(
    "ORI_TLS_SERVER_NAME",
    "",
    "Name `ori` expects in the server certificate (`--server-name`).",
    parse=envvars.text,
    shown="the --host value",
)


@dataclass(frozen=True, slots=True)
class TlsDefaults:
    """What the environment says; ``enabled`` is None when ORI_TLS is unset."""

    enabled: bool | None = None
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""


@dataclass(frozen=True, slots=True)
class ClientTls:
    """PEM material read and checked, ready for grpc.ssl_channel_credentials."""

    root_certificates: bytes | None
    certificate_chain: bytes | None
    private_key: bytes | None
    server_name: str | None


def tls_defaults(env: EnvReader) -> TlsDefaults:
    return TlsDefaults(
        enabled=env.get(TLS),
        ca_file=env.get(CA_FILE),
        cert_file=env.get(CERT_FILE),
        key_file=env.get(KEY_FILE),
        server_name=env.get(SERVER_NAME),
    )


def add_tls_options(group: argparse._ArgumentGroup, default: Callable[[object], object]) -> None:
    """``default`` keeps sub-parsers from overwriting flags given before the command."""
    group.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=default(None),
        help="connect with TLS (env ORI_TLS; implied by --ca-file, --cert-file, --server-name)",
    )
    for flag, metavar, text in (
        ("--ca-file", "PEM", "CA bundle to trust (env ORI_TLS_CA_FILE; default: system roots)"),
        ("--cert-file", "PEM", "client certificate for mTLS (env ORI_TLS_CLIENT_CERT_FILE)"),
        ("--key-file", "PEM", "its unencrypted key (env ORI_TLS_CLIENT_KEY_FILE)"),
        (
            "--server-name",
            "NAME",
            "name expected in the server certificate (env ORI_TLS_SERVER_NAME)",
        ),
    ):
        group.add_argument(flag, metavar=metavar, default=default(None), help=text)


def _pick(flag_value: str | None, flag: str, env_value: str, env_name: str) -> tuple[str, str]:
    """(value, where it came from); the flag wins over the environment."""
    if flag_value is not None:
        return flag_value, flag
    return env_value, env_name


def _readable(value: str, name: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise ConfigError(name, f"no such file (got {value!r})")
    if not os.access(path, os.R_OK):
        raise ConfigError(name, f"cannot read the file (got {value!r})")
    return path


def _enabled(args: argparse.Namespace, defaults: TlsDefaults) -> bool:
    if args.tls is not None:
        return bool(args.tls)
    flags = (args.ca_file, args.cert_file, args.key_file, args.server_name)
    if any(value is not None for value in flags):
        return True
    if defaults.enabled is not None:
        return defaults.enabled
    return bool(defaults.ca_file or defaults.cert_file or defaults.key_file)


def resolve_tls(args: argparse.Namespace, defaults: TlsDefaults) -> ClientTls | None:
    """TLS material for this invocation, or None for plaintext.

    Raises ConfigError naming the flag or variable at fault, so ``ori`` can exit 2
    before it connects.
    """
    if args.tls is False:
        for flag in ("ca_file", "cert_file", "key_file", "server_name"):
            if getattr(args, flag) is not None:
                raise ConfigError("--no-tls", f"contradicts --{flag.replace('_', '-')}")
    if not _enabled(args, defaults):
        return None
    ca, ca_name = _pick(args.ca_file, "--ca-file", defaults.ca_file, CA_FILE)
    cert, cert_name = _pick(args.cert_file, "--cert-file", defaults.cert_file, CERT_FILE)
    key, key_name = _pick(args.key_file, "--key-file", defaults.key_file, KEY_FILE)
    name, _ = _pick(args.server_name, "--server-name", defaults.server_name, SERVER_NAME)
    if bool(cert) != bool(key):
        given, missing = (
            (cert_name, f"--key-file or {KEY_FILE}")
            if cert
            else (key_name, f"--cert-file or {CERT_FILE}")
        )
        raise ConfigError(given, f"needs {missing} as well: mTLS takes a certificate and its key")
    root = None
    if ca:
        ca_path = _readable(ca, ca_name)
        check_certificates(ca_path, ca_name)
        root = ca_path.read_bytes()
    chain = private = None
    if cert and key:
        cert_path, key_path = _readable(cert, cert_name), _readable(key, key_name)
        check_key_pair(cert_path, key_path, cert_name, key_name)
        chain, private = cert_path.read_bytes(), key_path.read_bytes()
    return ClientTls(root, chain, private, name or None)


def open_channel(target: str, tls: ClientTls | None) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.root_certificates,
        private_key=tls.private_key,
        certificate_chain=tls.certificate_chain,
    )
    options = [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []
    return grpc.secure_channel(target, credentials, options=options)
