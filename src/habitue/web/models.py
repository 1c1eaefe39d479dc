"""Tables of the web room: staff users, member passwords, sign-in links, sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from habitue.db import Base, BigId


class StaffUser(Base):
    """A person who signs in to the admin console; `program_id` NULL means every program."""

    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int | None] = mapped_column(ForeignKey("programs.id"), nullable=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MemberCredential(Base):
    """A member's portal password (argon2 hash)."""

    __tablename__ = "member_credentials"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SignInToken(Base):
    """A one-time emailed sign-in link; only the token's SHA-256 is stored.

    The token is HMAC(`HABITUE_HMAC_KEY`, `seed`): whoever sends the message derives it again
    (`habitue.web.service.sign_in_link_url`); the database alone does not hold it.
    """

    __tablename__ = "member_sign_in_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    seed: Mapped[str | None] = mapped_column(String(64), nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    """A sign-up's password (argon2), given to the member when the link is used."""


class WebSession(Base):
    """A signed-in browser (member or staff); the cookie holds the token, the row its hash."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    program_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    member_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    staff_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_web_sessions_member", "member_id"),)


class ProgramWord(Base):
    """A program's own word in one language: its points name (`kind` "points", no code), a
    tier's name (`kind` "tier", the tier's code) or a privilege's label (`kind` "privilege")."""

    __tablename__ = "program_words"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    locale: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("program_id", "locale", "kind", "code", name="ux_program_words"),
    )
