"""Emulated Adobe IMS token endpoint (OAuth Server-to-Server, ``client_credentials``)."""

from __future__ import annotations

import hmac
import secrets
import time
from typing import TYPE_CHECKING

from aiohttp import web

from airflow_provider_capillary.testing.aep_emulator.errors import APIError

if TYPE_CHECKING:
    from airflow_provider_capillary.testing.aep_emulator.context import EmulatorContext

TOKEN_PATH = "/ims/token/v3"
_REQUIRED = ("grant_type", "client_id", "client_secret", "scope")


def routes(ctx: EmulatorContext) -> list[web.RouteDef]:
    """
    The IMS route.

    :param ctx: the emulator context.
    """

    async def token(request: web.Request) -> web.Response:
        form = dict(request.query)
        if request.body_exists:
            if request.content_type != "application/x-www-form-urlencoded":
                raise _oauth_error(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
            form.update({key: str(value) for key, value in (await request.post()).items()})
        missing = [name for name in _REQUIRED if not form.get(name)]
        if missing:
            raise _oauth_error(400, "invalid_request", f"missing required parameter(s): {', '.join(missing)}")
        if form["grant_type"] != "client_credentials":
            raise _oauth_error(400, "unsupported_grant_type", f"grant_type {form['grant_type']!r} is not supported")
        if not hmac.compare_digest(form["client_id"], ctx.config.client_id):
            raise _oauth_error(400, "invalid_client", "invalid client_id parameter")
        if not hmac.compare_digest(form["client_secret"], ctx.config.client_secret):
            raise _oauth_error(401, "invalid_client", "invalid client_secret parameter")
        access_token = "eyJ" + secrets.token_urlsafe(48)
        lifetime = ctx.config.token_lifetime
        with ctx.state.lock:
            ctx.state.tokens[access_token] = time.monotonic() + lifetime
        return ctx.json({"access_token": access_token, "token_type": "bearer", "expires_in": lifetime})

    return [web.post(TOKEN_PATH, token)]


def _oauth_error(status: int, error: str, description: str) -> APIError:
    return APIError(status, {"error": error, "error_description": description})
