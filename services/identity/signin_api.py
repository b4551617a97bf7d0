"""identity's sign-in routes: ask for a code texted to your registered mobile, then trade it for tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from shared.http import problem_responses
from shared.service_kit import state_dependency

from .schemas import SignInIn, SignInOut, TokensOut, VerifyIn
from .service import Identity, start_sign_in, verify_sign_in

router = APIRouter(prefix="/api/v1/identity", tags=["sign-in"])
IdentityDep = Annotated[Identity, Depends(state_dependency("identity", Identity))]


def client_of(request: Request) -> str:
    """The client's address as uvicorn gives it (X-Forwarded-For trusted from the proxy only)."""
    return request.client.host if request.client else "unknown"


@router.post(
    "/sign-in",
    status_code=202,
    response_model=SignInOut,
    responses=problem_responses(429, 503),
    summary="Text a sign-in code to your mobile, if the mobile registry lists it under your national ID",
)
async def post_sign_in(body: SignInIn, request: Request, identity: IdentityDep) -> SignInOut:
    """Always the same 202, whether or not the mobile is yours and whether or not a code was just sent (a second
    request within the cool-down texts nothing): the answer tells a stranger nothing."""
    await start_sign_in(identity, national_id=body.national_id, mobile=body.mobile, client=client_of(request))
    return SignInOut(expires_in_s=identity.codes.policy.ttl_s, resend_after_s=identity.codes.policy.resend_after_s)


@router.post(
    "/sign-in/verify",
    response_model=TokensOut,
    responses=problem_responses(401, 429, 503),
    summary="Trade the texted code for an access token and a refresh token",
)
async def post_verify(body: VerifyIn, request: Request, identity: IdentityDep) -> TokensOut:
    """The one 401 for a wrong, used or expired code, another person's mobile and an unknown person."""
    tokens = await verify_sign_in(
        identity, national_id=body.national_id, mobile=body.mobile, code=body.code, client=client_of(request)
    )
    return TokensOut(**vars(tokens))
