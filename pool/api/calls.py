"""The FrontEnd calls of a signed-in endpoint, once for both transports.

Each call reads its request, makes one domain call on the ``PoolService`` and builds the reply.
The unary servicer (``pool.api.frontend``) and the session stream (``pool.api.session``) both
run these: the same checks, errors and replies whichever way the request came.

``CALLS`` maps a method name to its call; ``ROUTES`` maps the ``SessionCall`` oneof field to
(method name, call, the ``SessionReply`` field of its answer), read from the descriptors.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from google.protobuf.message import Message

from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool.api import convert
from pool.api.framing import message_type
from pool.events import ChatMessage
from pool.registrar import Endpoint
from pool.service import PoolService

Call = Callable[[PoolService, Endpoint, Any], Coroutine[Any, Any, Message]]


async def sign_out(service: PoolService, ep: Endpoint, _: pb.SignOutRequest) -> pb.SignOutResponse:
    await service.sign_out(ep)
    return pb.SignOutResponse()


async def publish_presence(
    service: PoolService, ep: Endpoint, request: pb.PublishPresenceRequest
) -> pb.PublishPresenceResponse:
    view = await service.publish(ep, convert.publication(request))
    return pb.PublishPresenceResponse(presence=convert.presence(view))


async def reset_presence(
    service: PoolService, ep: Endpoint, _: pb.ResetPresenceRequest
) -> pb.ResetPresenceResponse:
    view = await service.reset_presence(ep)
    return pb.ResetPresenceResponse(presence=convert.presence(view))


async def get_presence(
    service: PoolService, ep: Endpoint, request: pb.GetPresenceRequest
) -> pb.GetPresenceResponse:
    views = await service.get_presence(ep, list(request.user_uris))
    return pb.GetPresenceResponse(presences=[convert.presence(v) for v in views])


async def subscribe(
    service: PoolService, ep: Endpoint, request: pb.SubscribeRequest
) -> pb.SubscribeResponse:
    views = await service.subscribe(ep, list(request.user_uris), float(request.expires_seconds))
    return pb.SubscribeResponse(
        presences=[convert.presence(v) for v in views], subscriptions=ep.user.subscriptions
    )


async def unsubscribe(
    service: PoolService, ep: Endpoint, request: pb.UnsubscribeRequest
) -> pb.UnsubscribeResponse:
    left = await service.unsubscribe(ep, list(request.user_uris))
    return pb.UnsubscribeResponse(subscriptions=left)


async def add_contact(
    service: PoolService, ep: Endpoint, request: pb.AddContactRequest
) -> pb.AddContactResponse:
    c = await service.add_contact(ep, request.contact_uri, int(request.access_level), request.group)
    return pb.AddContactResponse(contact=convert.contact(c), contacts=len(ep.user.contacts))


async def remove_contact(
    service: PoolService, ep: Endpoint, request: pb.RemoveContactRequest
) -> pb.RemoveContactResponse:
    return pb.RemoveContactResponse(contacts=await service.remove_contact(ep, request.contact_uri))


async def list_contacts(
    service: PoolService, ep: Endpoint, _: pb.ListContactsRequest
) -> pb.ListContactsResponse:
    contacts = await service.list_contacts(ep)
    return pb.ListContactsResponse(contacts=[convert.contact(c) for c in contacts])


async def create_conversation(
    service: PoolService, ep: Endpoint, request: pb.CreateConversationRequest
) -> pb.CreateConversationResponse:
    first = (
        ChatMessage(request.first_message.body, request.first_message.content_type)
        if request.HasField("first_message")
        else None
    )
    conv = await service.create_conversation(ep, list(request.invitees), request.subject, first)
    seq = conv.sequence
    return pb.CreateConversationResponse(
        conversation_id=conv.conversation_id,
        conference_uri=conv.conference_uri,
        message_id=f"{conv.conversation_id}:{seq}" if seq else "",
        sequence=seq,
    )


async def invite(
    service: PoolService, ep: Endpoint, request: pb.InviteRequest
) -> pb.InviteResponse:
    invited = await service.invite(ep, request.conversation_id, request.user_uri)
    return pb.InviteResponse(escalated=invited.escalated, conference_uri=invited.conference_uri)


async def accept_invitation(
    service: PoolService, ep: Endpoint, request: pb.AcceptInvitationRequest
) -> pb.AcceptInvitationResponse:
    joined = await service.accept(ep, request.conversation_id)
    return pb.AcceptInvitationResponse(
        participants=joined.participants, conference_uri=joined.conference_uri
    )


async def decline_invitation(
    service: PoolService, ep: Endpoint, request: pb.DeclineInvitationRequest
) -> pb.DeclineInvitationResponse:
    await service.decline(ep, request.conversation_id)
    return pb.DeclineInvitationResponse()


async def send_message(
    service: PoolService, ep: Endpoint, request: pb.SendMessageRequest
) -> pb.SendMessageResponse:
    message_id, seq = await service.send_message(
        ep, request.conversation_id, request.body, request.content_type
    )
    return pb.SendMessageResponse(message_id=message_id, sequence=seq)


async def set_typing(
    service: PoolService, ep: Endpoint, request: pb.SetTypingRequest
) -> pb.SetTypingResponse:
    await service.set_typing(ep, request.conversation_id, request.typing)
    return pb.SetTypingResponse()


async def leave(service: PoolService, ep: Endpoint, request: pb.LeaveRequest) -> pb.LeaveResponse:
    await service.leave(ep, request.conversation_id)
    return pb.LeaveResponse()


CALLS: dict[str, Call] = {
    "SignOut": sign_out,
    "PublishPresence": publish_presence,
    "ResetPresence": reset_presence,
    "GetPresence": get_presence,
    "Subscribe": subscribe,
    "Unsubscribe": unsubscribe,
    "AddContact": add_contact,
    "RemoveContact": remove_contact,
    "ListContacts": list_contacts,
    "CreateConversation": create_conversation,
    "Invite": invite,
    "AcceptInvitation": accept_invitation,
    "DeclineInvitation": decline_invitation,
    "SendMessage": send_message,
    "SetTyping": set_typing,
    "Leave": leave,
}


def _routes() -> dict[str, tuple[str, Call, str]]:
    service = pb.DESCRIPTOR.services_by_name["FrontEnd"]
    by_input = {m.input_type.full_name: m for m in service.methods}
    replies = {
        message_type(f).full_name: f.name
        for f in pb.SessionReply.DESCRIPTOR.oneofs_by_name["response"].fields
    }
    out: dict[str, tuple[str, Call, str]] = {}
    for f in pb.SessionCall.DESCRIPTOR.oneofs_by_name["request"].fields:
        method = by_input[message_type(f).full_name]
        out[f.name] = (method.name, CALLS[method.name], replies[method.output_type.full_name])
    return out


#: SessionCall's request field -> (method, call, SessionReply's response field)
ROUTES = _routes()
#: SessionCall's request field -> the method it stands for
METHOD_OF_FIELD = {field: method for field, (method, _, _) in ROUTES.items()}
