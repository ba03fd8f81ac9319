"""Given/when/then for the User aggregate: every command and every rule."""

from __future__ import annotations

import pytest

from eventray.aggregates.user import (
    MAX_BIO_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_NAME_LENGTH,
    MAX_REASON_LENGTH,
    MAX_SUPPORT_MESSAGE_LENGTH,
    USER,
    ChangeEmail,
    DeactivateUser,
    EmailChanged,
    InvalidEmail,
    InvalidName,
    InvalidSupportMessage,
    ProfileUpdated,
    RegisterUser,
    SendSupportMessage,
    SupportMessageSent,
    UpdateProfile,
    UserDeactivated,
    UserDeactivatedError,
    UserRegistered,
    UserState,
    UserStatus,
)
from eventray.platform.errors import AlreadyExists, InvalidCommand, NotFound, RuleViolation
from eventray.platform.testing import scenario

ID = "user-1"
REGISTERED = UserRegistered(name="Ada Lovelace", email="ada@example.com")
DEACTIVATED = UserDeactivated(reason="left")


def register(name: str = "Ada Lovelace", email: str = "ada@example.com") -> RegisterUser:
    return RegisterUser(aggregate_id=ID, name=name, email=email)


# --- RegisterUser ----------------------------------------------------------------------------


def test_register_emits_user_registered_and_creates_state() -> None:
    state = scenario(USER).given().when(register()).then(REGISTERED)
    assert state == UserState(name="Ada Lovelace", email="ada@example.com")
    assert state.status is UserStatus.ACTIVE and state.bio == ""


def test_register_normalises_name_and_email() -> None:
    scenario(USER).when(register(name="  Ada Lovelace \t", email="  Ada@Example.COM ")).then(
        REGISTERED
    )


def test_register_existing_user_already_exists() -> None:
    err = scenario(USER).given(REGISTERED).when(register()).raises(AlreadyExists)
    assert err.details["id"] == ID  # type: ignore[attr-defined]


def test_register_deactivated_user_already_exists() -> None:
    scenario(USER).given(REGISTERED, DEACTIVATED).when(register()).raises(AlreadyExists)


VALID_EMAILS = [
    "a@b.co",
    "first.last+tag@sub.example.org",
    "o'brien@example.ie",
    "x_y-z@my-domain.io",
    "1234@123.com",
    "a" * 64 + "@example.com",
]


@pytest.mark.parametrize("email", VALID_EMAILS)
def test_register_accepts_valid_email(email: str) -> None:
    scenario(USER).when(register(email=email)).then(UserRegistered(name="Ada Lovelace", email=email))


INVALID_EMAILS = [
    "",
    "   ",
    "plainaddress",
    "@example.com",
    "ada@",
    "ada@example",  # no top-level domain
    "ada@@example.com",
    "ada example@example.com",
    ".ada@example.com",
    "ada.@example.com",
    "ada..lovelace@example.com",
    "ada@-example.com",
    "ada@example-.com",
    "ada@example..com",
    "ada@.example.com",
    "ada@example.com.",
    "ada@exa_mple.com",
    "ada\n@example.com",
    "ada@example.com\nBcc: x@y.com",
    "adä@example.com",  # non-ASCII
    "\u212aada@example.com",  # KELVIN SIGN lowercases to ASCII "k": still refused
    "a" * 65 + "@example.com",  # local part over 64
    "a@" + "b" * 64 + ".com",  # label over 63
    "a@" + ("b" * 60 + ".") * 5 + "com",  # whole address over 254
]


@pytest.mark.parametrize("email", INVALID_EMAILS)
def test_register_refuses_invalid_email(email: str) -> None:
    err = scenario(USER).when(register(email=email)).raises(InvalidEmail)
    assert isinstance(err, InvalidCommand)
    assert err.details["field"] == "email"  # type: ignore[attr-defined]


def test_email_max_length_boundary() -> None:
    local = "a" * 64
    domain_len = MAX_EMAIL_LENGTH - len(local) - 1
    labels = []
    while domain_len > 0:
        take = min(61, domain_len - 2) if domain_len > 63 else domain_len
        labels.append("b" * take)
        domain_len -= take + 1
    email = local + "@" + ".".join(labels)
    assert len(email) == MAX_EMAIL_LENGTH
    scenario(USER).when(register(email=email)).then(UserRegistered(name="Ada Lovelace", email=email))
    scenario(USER).when(register(email="a" + email)).raises(InvalidEmail)


def test_register_refuses_non_string_email() -> None:
    scenario(USER).when(register(email=42)).raises(InvalidEmail)  # type: ignore[arg-type]


def test_name_max_length_boundary() -> None:
    name = "n" * MAX_NAME_LENGTH
    scenario(USER).when(register(name=name)).then(UserRegistered(name=name, email="ada@example.com"))
    scenario(USER).when(register(name=name + "n")).raises(InvalidName)


def test_name_is_measured_after_stripping() -> None:
    name = "n" * MAX_NAME_LENGTH
    scenario(USER).when(register(name=f"  {name}  ")).then(
        UserRegistered(name=name, email="ada@example.com")
    )


def test_unicode_name_is_accepted() -> None:
    scenario(USER).when(register(name="Zoë Ōtsuka-Ñúñez 李")).then(
        UserRegistered(name="Zoë Ōtsuka-Ñúñez 李", email="ada@example.com")
    )


@pytest.mark.parametrize(
    "name",
    ["", "   ", "\t\n", "Ada\x00", "Ada\nLovelace", "Ada\x1b[31m", "Ada\x7f", "Ada\x85x",
     "Ada\u2028x", "Ada\u202egnp.exe", "Ada\u2066x"],
)
def test_register_refuses_invalid_name(name: str) -> None:
    err = scenario(USER).when(register(name=name)).raises(InvalidName)
    assert err.details["field"] == "name"  # type: ignore[attr-defined]


def test_register_refuses_non_string_name() -> None:
    scenario(USER).when(register(name=None)).raises(InvalidName)  # type: ignore[arg-type]


# --- UpdateProfile ---------------------------------------------------------------------------


def test_update_profile_name_and_bio() -> None:
    state = (
        scenario(USER)
        .given(REGISTERED)
        .when(UpdateProfile(aggregate_id=ID, name=" Ada King ", bio=" Mathematician\nWriter "))
        .then(ProfileUpdated(name="Ada King", bio="Mathematician\nWriter"))
    )
    assert state.name == "Ada King" and state.bio == "Mathematician\nWriter"
    assert state.email == "ada@example.com"


def test_update_profile_without_bio_keeps_bio() -> None:
    scenario(USER).given(REGISTERED, ProfileUpdated(name="Ada", bio="bio")).when(
        UpdateProfile(aggregate_id=ID, name="Ada K")
    ).then(ProfileUpdated(name="Ada K", bio="bio"))


def test_update_profile_empty_bio_clears_it() -> None:
    scenario(USER).given(REGISTERED, ProfileUpdated(name="Ada", bio="bio")).when(
        UpdateProfile(aggregate_id=ID, name="Ada", bio="  ")
    ).then(ProfileUpdated(name="Ada", bio=""))


def test_update_profile_unchanged_is_a_no_op() -> None:
    scenario(USER).given(REGISTERED).when(
        UpdateProfile(aggregate_id=ID, name=" Ada Lovelace ", bio="")
    ).then()
    scenario(USER).given(REGISTERED).when(UpdateProfile(aggregate_id=ID, name="Ada Lovelace")).then()


def test_update_profile_missing_user_not_found() -> None:
    scenario(USER).when(UpdateProfile(aggregate_id=ID, name="Ada")).raises(NotFound)


def test_update_profile_deactivated_user() -> None:
    err = scenario(USER).given(REGISTERED, DEACTIVATED).when(
        UpdateProfile(aggregate_id=ID, name="Ada")
    ).raises(UserDeactivatedError)
    assert isinstance(err, RuleViolation)


def test_update_profile_invalid_name() -> None:
    scenario(USER).given(REGISTERED).when(UpdateProfile(aggregate_id=ID, name=" ")).raises(
        InvalidName
    )
    scenario(USER).given(REGISTERED).when(
        UpdateProfile(aggregate_id=ID, name="x" * (MAX_NAME_LENGTH + 1))
    ).raises(InvalidName)


def test_update_profile_bio_max_length_boundary() -> None:
    bio = "b" * MAX_BIO_LENGTH
    scenario(USER).given(REGISTERED).when(UpdateProfile(aggregate_id=ID, name="Ada", bio=bio)).then(
        ProfileUpdated(name="Ada", bio=bio)
    )
    err = scenario(USER).given(REGISTERED).when(
        UpdateProfile(aggregate_id=ID, name="Ada", bio=bio + "b")
    ).raises(InvalidCommand)
    assert err.details["field"] == "bio"  # type: ignore[attr-defined]


@pytest.mark.parametrize("bio", ["a\x00b", "a\x1bb", "a\rb", "a\u202eb"])
def test_update_profile_bio_control_chars(bio: str) -> None:
    scenario(USER).given(REGISTERED).when(
        UpdateProfile(aggregate_id=ID, name="Ada", bio=bio)
    ).raises(InvalidCommand)


# --- ChangeEmail -----------------------------------------------------------------------------


def test_change_email() -> None:
    state = (
        scenario(USER)
        .given(REGISTERED)
        .when(ChangeEmail(aggregate_id=ID, email=" Ada.King@Example.org "))
        .then(EmailChanged(email="ada.king@example.org", previous_email="ada@example.com"))
    )
    assert state.email == "ada.king@example.org"


def test_change_email_twice_records_each_previous() -> None:
    scenario(USER).given(
        REGISTERED, EmailChanged(email="b@example.com", previous_email="ada@example.com")
    ).when(ChangeEmail(aggregate_id=ID, email="c@example.com")).then(
        EmailChanged(email="c@example.com", previous_email="b@example.com")
    )


def test_change_to_same_email_is_a_no_op() -> None:
    scenario(USER).given(REGISTERED).when(ChangeEmail(aggregate_id=ID, email="ada@example.com")).then()
    # the same after normalisation, too
    scenario(USER).given(REGISTERED).when(ChangeEmail(aggregate_id=ID, email=" ADA@example.com")).then()


def test_change_email_missing_user_not_found() -> None:
    scenario(USER).when(ChangeEmail(aggregate_id=ID, email="a@b.co")).raises(NotFound)


def test_change_email_deactivated_user() -> None:
    scenario(USER).given(REGISTERED, DEACTIVATED).when(
        ChangeEmail(aggregate_id=ID, email="a@b.co")
    ).raises(UserDeactivatedError)


def test_change_to_same_email_on_deactivated_user_is_refused() -> None:
    scenario(USER).given(REGISTERED, DEACTIVATED).when(
        ChangeEmail(aggregate_id=ID, email="ada@example.com")
    ).raises(UserDeactivatedError)


@pytest.mark.parametrize("email", ["", "nope", "a@b", "a b@c.de"])
def test_change_email_invalid(email: str) -> None:
    scenario(USER).given(REGISTERED).when(ChangeEmail(aggregate_id=ID, email=email)).raises(
        InvalidEmail
    )


# --- DeactivateUser --------------------------------------------------------------------------


def test_deactivate() -> None:
    state = (
        scenario(USER)
        .given(REGISTERED)
        .when(DeactivateUser(aggregate_id=ID, reason="  requested by user "))
        .then(UserDeactivated(reason="requested by user"))
    )
    assert state.status is UserStatus.DEACTIVATED


def test_deactivate_missing_user_not_found() -> None:
    scenario(USER).when(DeactivateUser(aggregate_id=ID, reason="x")).raises(NotFound)


def test_deactivate_twice_is_refused() -> None:
    scenario(USER).given(REGISTERED, DEACTIVATED).when(
        DeactivateUser(aggregate_id=ID, reason="again")
    ).raises(UserDeactivatedError)


@pytest.mark.parametrize("reason", ["", "   ", "x" * (MAX_REASON_LENGTH + 1), "bad\x00"])
def test_deactivate_invalid_reason(reason: str) -> None:
    err = scenario(USER).given(REGISTERED).when(
        DeactivateUser(aggregate_id=ID, reason=reason)
    ).raises(InvalidCommand)
    assert err.details["field"] == "reason"  # type: ignore[attr-defined]


def test_deactivate_reason_max_length_boundary() -> None:
    reason = "r" * MAX_REASON_LENGTH
    scenario(USER).given(REGISTERED).when(DeactivateUser(aggregate_id=ID, reason=reason)).then(
        UserDeactivated(reason=reason)
    )


# --- SendSupportMessage ----------------------------------------------------------------------


def test_a_support_message_is_recorded_stripped_and_leaves_the_state_alone() -> None:
    state = (
        scenario(USER)
        .given(REGISTERED)
        .when(SendSupportMessage(aggregate_id=ID, body="  My card was charged twice.\nPlease refund me. "))
        .then(SupportMessageSent(body="My card was charged twice.\nPlease refund me."))
    )
    assert state == UserState(name="Ada Lovelace", email="ada@example.com")


def test_a_support_message_needs_a_registered_active_user() -> None:
    scenario(USER).when(SendSupportMessage(aggregate_id=ID, body="hello there")).raises(NotFound)
    scenario(USER).given(REGISTERED, DEACTIVATED).when(
        SendSupportMessage(aggregate_id=ID, body="hello there")).raises(UserDeactivatedError)


@pytest.mark.parametrize("body", ["", "  \n ", "42 !", "x" * (MAX_SUPPORT_MESSAGE_LENGTH + 1), "help\x00me",
                                  "help \u202e me"])
def test_an_unusable_support_message_is_refused(body: str) -> None:
    err = scenario(USER).given(REGISTERED).when(SendSupportMessage(aggregate_id=ID, body=body)).raises(
        InvalidSupportMessage)
    assert err.details["field"] == "body"  # type: ignore[attr-defined]
    assert err.code == "INVALID_SUPPORT_MESSAGE"


def test_the_support_message_length_boundary() -> None:
    body = "ab " * (MAX_SUPPORT_MESSAGE_LENGTH // 3) + "ab"[: MAX_SUPPORT_MESSAGE_LENGTH % 3]
    assert len(body.strip()) <= MAX_SUPPORT_MESSAGE_LENGTH
    scenario(USER).given(REGISTERED).when(SendSupportMessage(aggregate_id=ID, body=body)).then(
        SupportMessageSent(body=body.strip()))


# --- evolve ----------------------------------------------------------------------------------


def test_fold_full_history() -> None:
    state = USER.fold(
        [
            REGISTERED,
            ProfileUpdated(name="Ada King", bio="Countess"),
            EmailChanged(email="countess@example.org", previous_email="ada@example.com"),
            DEACTIVATED,
        ]
    )
    assert state == UserState(
        name="Ada King",
        email="countess@example.org",
        bio="Countess",
        status=UserStatus.DEACTIVATED,
    )


def test_evolve_never_fails_on_out_of_order_or_foreign_events() -> None:
    from eventray.aggregates.account import AccountOpened

    assert USER.evolve(None, ProfileUpdated(name="x", bio="")) is None
    state = USER.fold([REGISTERED])
    assert USER.evolve(state, AccountOpened(owner_id="u", currency="EUR")) is state


def test_decide_refuses_a_foreign_command() -> None:
    from eventray.aggregates.account import Deposit

    with pytest.raises(InvalidCommand):
        USER.decide(None, Deposit(aggregate_id=ID, amount=1))


def test_commands_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        RegisterUser("Ada", "ada@example.com", aggregate_id=ID)  # type: ignore[misc]
