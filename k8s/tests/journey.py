"""The user journey across the processes of one release, as a user meets
it: the bootstrap admin logs in, invites by email, the invitation arrives at
a real SMTP server, the invitee registers with the token from the mail,
confirms the address from the next mail, logs in, makes an API key, reads
itself with it, and is told about the key (listed and mailed), while the
admin is told that the invitation was accepted.

Each step calls the Service of the component that serves it, so the calls
the processes make to each other (registration claiming the invitation,
credentials resolved by the access service, mails handed to the
invitations service's mailer, events reaching the notifications service
over NATS) run across the rendered wiring. The gRPC stubs are generated from
proto/roster/v1 at test time (grpcio-tools) into a temporary folder.

run_chart.py drives it:

    with journey.Protos() as pb, journey.Mailbox() as mailbox:  # mail.smtp_url: mailbox.url
        journey.run(pb, channels, mailbox, admin, base_url, say=print)
"""

from __future__ import annotations

import email
import email.policy
import importlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import grpc
from aiosmtpd.controller import Controller

REPO = Path(__file__).resolve().parents[2]
PROTO = REPO / "proto"
# How long a step that crosses processes (a mail, an event) may take.
WAIT = 30.0
# How long one call may take.
CALL = 10.0


class Failure(Exception):
    """A step of the journey did not give what a user expects."""


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise Failure(what)


class Protos:
    """The Python modules of roster.v1, generated from proto/ into a
    temporary folder for as long as the block runs."""

    MODULES = ("identifiers", "rights", "user", "user_lifecycle", "authentication", "access",
               "invitation", "notification", "notification_type")

    def __enter__(self) -> types.SimpleNamespace:
        self._dir = tempfile.TemporaryDirectory(prefix="roster-protos-")
        out = self._dir.name
        protos = sorted(str(p.relative_to(PROTO)) for p in (PROTO / "roster/v1").glob("*.proto"))
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO}", f"--python_out={out}",
             f"--grpc_python_out={out}", *protos],
            check=True, capture_output=True, text=True, cwd=PROTO,
        )
        sys.path.insert(0, out)
        pb = types.SimpleNamespace()
        for name in self.MODULES:
            setattr(pb, name, importlib.import_module(f"roster.v1.{name}_pb2"))
            grpc_module = importlib.import_module(f"roster.v1.{name}_pb2_grpc")
            setattr(pb, f"{name}_grpc", grpc_module)
        return pb

    def __exit__(self, *exc) -> None:
        sys.path.remove(self._dir.name)
        self._dir.cleanup()


@dataclass
class Mail:
    """One mail as the SMTP server received it."""

    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        return self.message.get_body(preferencelist=("plain",)).get_content()

    def link(self, base_url: str, path: str) -> str:
        """The first link of the text part under `base_url` + `path`."""
        prefix = base_url.rstrip("/") + path
        for word in self.text.split():
            if word.startswith(prefix):
                return word
        raise Failure(f"the mail {self.subject!r} has no link {prefix}…:\n{self.text}")


class Mailbox:
    """An SMTP server on 127.0.0.1 (aiosmtpd, in a thread of its own) that
    keeps every mail it is handed."""

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._mails: list[Mail] = []
        self._arrived = threading.Condition()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> "Mailbox":
        self._controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._controller.stop()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._arrived:
            self._mails.append(Mail(list(envelope.rcpt_tos), message))
            self._arrived.notify_all()
        return "250 OK"

    def wait(self, recipient: str, subject: str, timeout: float = WAIT) -> Mail:
        """The first mail to `recipient` whose subject holds `subject`."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for mail in self._mails:
                    if recipient in mail.recipients and subject in mail.subject:
                        return mail
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(m.recipients, m.subject) for m in self._mails]
                    raise Failure(f"no mail to {recipient} about {subject!r} within {timeout:.0f} s; got {seen}")
                self._arrived.wait(left)


def eventually(what: str, probe, timeout: float = WAIT):
    """Calls `probe` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            found = probe()
            if found:
                return found
            last = "not yet"
        except grpc.RpcError as e:
            last = f"{e.code().name}: {e.details()}"
        time.sleep(0.2)
    raise Failure(f"{what}: not within {timeout:.0f} s (last: {last})")


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Admin:
    user_id: str
    email: str
    password: str


INVITEE = "dana"
INVITEE_EMAIL = "dana@chart.example"
INVITEE_PASSWORD = "Violet-Horse-1234"
KEY_NAME = "chart journey"


def call(step: str, rpc, request, **kwargs):
    """One call; a gRPC error becomes a Failure naming the step."""
    try:
        return rpc(request, timeout=CALL, **kwargs)
    except grpc.RpcError as e:
        raise Failure(f"{step}: {e.code().name}: {e.details()}") from None


def run(pb, channels: dict[str, grpc.Channel], mailbox: Mailbox, admin: Admin, base_url: str, say) -> None:
    """The journey; `channels` maps each component (user-registry, access,
    sessions, invitations, notifications) to a channel to its Service's
    public port. Raises Failure at the first step that goes wrong; `say`
    reports each step that passed."""
    ids = pb.identifiers.UserIdentifiers
    registry = pb.user_grpc.UserRegistryStub(channels["user-registry"])
    lifecycle = pb.user_lifecycle_grpc.UserLifecycleStub(channels["user-registry"])
    auth = pb.authentication_grpc.AuthenticationStub(channels["sessions"])
    access = pb.access_grpc.UserAccessStub(channels["access"])
    invitations = pb.invitation_grpc.UserInvitationRegistryStub(channels["invitations"])
    notifications = pb.notification_grpc.NotificationServiceStub(channels["notifications"])
    kinds = pb.notification_type.NotificationType

    # The admin the chart's bootstrap values made logs in with the password
    # from the Secret, and is an admin with the address the values gave.
    login = call("admin login", auth.Login, pb.authentication.LoginRequest(
        user_ids=ids(user_id=admin.user_id), password=admin.password))
    expect(login.session_ids.user_ids.user_id == admin.user_id, f"admin login: session of {login.session_ids}")
    expect(login.token.startswith("rst.") and not login.password_update_required, "admin login: no usable session")
    admin_session = login.token
    me = call("admin reads itself", registry.Get, pb.user.GetUserRequest(user_ids=ids(user_id=admin.user_id)),
              metadata=bearer(admin_session))
    expect(me.admin and me.primary_email_address == admin.email,
           f"the bootstrap admin: admin={me.admin}, email={me.primary_email_address}")
    say(f"the bootstrap admin {admin.user_id} logs in (sessions) and is an admin with {admin.email} (user registry)")

    # The invitation: its token comes back once, and in the mail.
    sent = call("send the invitation", invitations.Send, pb.invitation.SendInvitationRequest(email=INVITEE_EMAIL),
                metadata=bearer(admin_session))
    expect(len(sent.invitations) == 1, f"send the invitation: {len(sent.invitations)} invitations")
    invitation = sent.invitations[0]
    expect(invitation.email == INVITEE_EMAIL and invitation.token and invitation.sent_by.user_id == admin.user_id,
           f"send the invitation: email={invitation.email}, sent by {invitation.sent_by.user_id}")
    mail = mailbox.wait(INVITEE_EMAIL, "invited")
    expect(mail.recipients == [INVITEE_EMAIL] and INVITEE_EMAIL in str(mail.message["To"]),
           f"the invitation mail went to {mail.recipients} (To: {mail.message['To']})")
    link = mail.link(base_url, "/register?")
    token = parse_qs(urlsplit(link).query).get("invitation_token", [""])[0]
    expect(token == invitation.token, "the invitation mail's token is not the invitation's")
    say(f"the admin invites {INVITEE_EMAIL} (invitations); the mail reaches the SMTP server with the token")

    # The invitee registers with the token, asking to be mailed about new
    # API keys.
    user = call("register with the invitation", registry.Create, pb.user.CreateUserRequest(
        user=pb.user.User(
            ids=ids(user_id=INVITEE), primary_email_address=INVITEE_EMAIL, password=INVITEE_PASSWORD,
            email_notification_preferences=pb.user.EmailNotificationPreferences(types=[kinds.API_KEY_CREATED]),
        ),
        invitation_token=token,
    ))
    expect(user.ids.user_id == INVITEE and user.primary_email_address == INVITEE_EMAIL and not user.password,
           f"register: got {user.ids.user_id} {user.primary_email_address}")
    accepted = call("the invitation after registration", invitations.Get,
                    pb.invitation.GetInvitationRequest(id=invitation.id), metadata=bearer(admin_session))
    expect(accepted.accepted_by.user_id == INVITEE and accepted.HasField("accepted_at") and not accepted.token,
           f"the invitation is not accepted by {INVITEE}: {accepted}")
    say(f"{INVITEE} registers with the token (user registry); the invitation shows it accepted (invitations)")

    # The address is confirmed from the mail the user registry owes.
    mail = mailbox.wait(INVITEE_EMAIL, "Confirm your email")
    query = parse_qs(urlsplit(mail.link(base_url, "/validate-email?")).query)
    expect(query.get("user_id") == [INVITEE], f"the confirmation link names {query.get('user_id')}")
    call("confirm the address", lifecycle.ValidateEmail, pb.user_lifecycle.ValidateEmailRequest(
        user_ids=ids(user_id=INVITEE), code=query.get("token", [""])[0]))
    say(f"{INVITEE} confirms the address from the mail (user registry → mailer → SMTP)")

    # Login, and an API key made with the session.
    login = call("invitee login", auth.Login, pb.authentication.LoginRequest(
        user_ids=ids(email=INVITEE_EMAIL), password=INVITEE_PASSWORD))
    expect(login.session_ids.user_ids.user_id == INVITEE and login.token.startswith("rst."),
           f"invitee login: session of {login.session_ids.user_ids.user_id}")
    rights = [pb.rights.RIGHT_USER_INFO, pb.rights.RIGHT_USER_NOTIFICATIONS_READ]
    key = call("create an API key", access.CreateAPIKey, pb.access.CreateUserAPIKeyRequest(
        user_ids=ids(user_id=INVITEE), name=KEY_NAME, rights=rights), metadata=bearer(login.token))
    expect(key.key.startswith(f"rak.{key.id}.") and key.name == KEY_NAME and sorted(key.rights) == sorted(rights),
           f"create an API key: id={key.id}, name={key.name}, rights={list(key.rights)}")
    say(f"{INVITEE} logs in by email (sessions) and makes an API key with the session (access)")

    # The key reads its user: the user registry resolves it through access.
    got = call("read itself with the key", registry.Get,
               pb.user.GetUserRequest(user_ids=ids(user_id=INVITEE)), metadata=bearer(key.key))
    expect(got.ids.user_id == INVITEE and got.primary_email_address == INVITEE_EMAIL
           and got.HasField("primary_email_address_validated_at") and not got.admin,
           f"read itself: {got.ids.user_id} {got.primary_email_address} validated={got.HasField('primary_email_address_validated_at')}")
    say(f"the API key reads {INVITEE} (user registry), address confirmed")

    def listed(receiver: str, token: str, kind: int):
        """The newest notification of `kind` that `receiver` lists, if any."""
        page = notifications.List(pb.notification.ListNotificationsRequest(receiver_ids=ids(user_id=receiver)),
                                  timeout=CALL, metadata=bearer(token))
        return next((n for n in page.notifications if n.notification_type == kind), None)

    # Told about the key: listed with the key, and mailed (the preference).
    note = eventually("the API key notification is listed",
                      lambda: listed(INVITEE, key.key, kinds.API_KEY_CREATED))
    expect(note.entity_ids.user_ids.user_id == INVITEE and note.email
           and note.status == pb.notification.NOTIFICATION_STATUS_UNSEEN,
           f"the API key notification: {note}")
    mail = mailbox.wait(INVITEE_EMAIL, "API key")
    mail.link(base_url, f"/notifications/{note.id}")
    say(f"{INVITEE} is told of the new key: listed (notifications) and mailed with a link to it")

    # The inviter is told that the invitation was accepted.
    note = eventually("the accepted invitation is listed for the admin",
                      lambda: listed(admin.user_id, admin_session, kinds.INVITATION_ACCEPTED))
    expect(note.entity_ids.invitation_email == INVITEE_EMAIL, f"the accepted-invitation notification is about {note.entity_ids}")
    say(f"the admin is told that {INVITEE_EMAIL} accepted the invitation (notifications)")
