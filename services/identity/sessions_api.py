"""identity's session routes: refresh (rotating the refresh token), sign-out, sign-out everywhere, and the
public keys every service verifies access tokens with."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from shared.http import problem_responses
from shared.service_kit import state_dependency
from shared.sessions import CitizenSessionDep

from .adapters_keys import SigningKeys
from .schemas import RefreshIn, TokensOut
from .service import Identity, refresh_session, sign_out, sign_out_everywhere

router = APIRouter(prefix="/api/v1/identity", tags=["sessions"])
keys_router = APIRouter(tags=["keys"])
IdentityDep = Annotated[Identity, Depends(state_dependency("identity", Identity))]
KeysDep = Annotated[SigningKeys, Depends(state_dependency("signing_keys", SigningKeys))]
# Verifiers fetch the keys again at least this often (KHEDMAT_IDENTITY_JWKS_MAX_AGE_S): a cache may too.
JWKS_MAX_AGE_S = 300


@router.post(
    "/token/refresh",
    response_model=TokensOut,
    responses=problem_responses(401, 503),
    summary="New tokens for your session; the refresh token sent is spent (sent again, it ends the session)",
)
async def post_refresh(body: RefreshIn, identity: IdentityDep) -> TokensOut:
    return TokensOut(**vars(await refresh_session(identity, refresh_token=body.refresh_token)))


def _sign_out_route(path: str, name: str, summary: str, use_case: Callable[..., Awaitable[None]]) -> None:
    """A sign-out route: the presented session's use case, then 204 (the two differ only in what they end)."""

    async def end(session: CitizenSessionDep, identity: IdentityDep) -> Response:
        await use_case(identity, session=session)
        return Response(status_code=204)

    router.add_api_route(
        path, end, methods=["POST"], name=name, status_code=204, responses=problem_responses(401, 503), summary=summary
    )


_sign_out_route(
    "/sign-out", "post_sign_out", "End this session: its access and refresh tokens are refused from now on", sign_out
)
_sign_out_route(
    "/sign-out-everywhere",
    "post_sign_out_everywhere",
    "End every session of yours, on every device",
    sign_out_everywhere,
)


@keys_router.get(
    "/.well-known/jwks.json",
    summary="The public keys access tokens are signed with (JWKS; Ed25519, each under its kid)",
    response_model=None,
)
async def get_jwks(keys: KeysDep) -> JSONResponse:
    document: dict[str, Any] = keys.public_jwks()
    return JSONResponse(document, headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_S}"})
