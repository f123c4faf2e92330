"""``edge-hq enrol-serve``: answers boxes' enrolment requests over MQTT.

Subscribes to every enrolment request (``sync.contract.all_enrol_requests``), redeems
each (:func:`hq.issuing.enrolment.redeem`) and answers on the box's reply topic. One
server per HQ home: the token file is read and written by this process only.

Given ``credentials`` (``provisioning.brokeraccounts.BrokerAccounts.issue``, wired by
``edge-hq enrol-serve --broker-auth DIR``), an accepted box also gets its broker password,
sealed to the device key it just registered (``edge.keys.seal_to``).
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge.keys import seal_to
from hq.broker import BrokerOptions, json_properties, make_client
from hq.issuing.enrolment import redeem
from sync.contract import (
    QOS,
    ContractError,
    EnrolReply,
    EnrolRequest,
    all_enrol_requests,
    enrol_reply_topic,
)

log = logging.getLogger("hq.enrol")


class EnrolService:
    """A connected subscriber that registers enrolling devices."""

    def __init__(self, home: Path, opts: BrokerOptions, client_id: str = "edge-hq-enrol",
                 credentials: Callable[[str, str], str] | None = None) -> None:
        """Serve enrolments for the HQ home ``home`` on the broker of ``opts``.

        ``credentials(store, device)`` issues an accepted box's broker password.
        """
        self.home = home
        self.credentials = credentials
        self.opts = opts
        self.topics = opts.topics
        self.client = make_client(opts, client_id)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.subscribed = threading.Event()
        self.answered = 0

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode,
                    _p: Any) -> None:
        if rc.is_failure:
            log.error("broker refused the enrolment service: %s", rc)
            return
        client.subscribe(all_enrol_requests(self.topics), qos=QOS)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, rcs: list[ReasonCode],
                      _p: Any) -> None:
        if any(rc.is_failure for rc in rcs):
            log.error("broker refused the enrolment subscription: %s", rcs)
            return
        log.info("serving enrolments on %s", all_enrol_requests(self.topics))
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        store, device = parts[-2], parts[-1]
        try:
            request = EnrolRequest.decode(bytes(msg.payload))
            if (request.store, request.device) != (store, device):
                reply = EnrolReply("bad_request", "store and device differ from the topic's")
            else:
                reply = redeem(self.home, request)
                if reply.ok and self.credentials is not None:
                    reply = self._with_credentials(reply, request)
        except ContractError as exc:
            reply = EnrolReply("bad_request", str(exc))
        log.info("enrolment of %s/%s: %s %s", store, device, reply.code, reply.message)
        self.answered += 1
        client.publish(enrol_reply_topic(self.topics, store, device), reply.encode(), qos=QOS,
                       properties=json_properties())

    def _with_credentials(self, reply: EnrolReply, request: EnrolRequest) -> EnrolReply:
        assert self.credentials is not None
        try:
            password = self.credentials(request.store, request.device)
        except Exception:  # a pluggable issuer: any failure is answered, never kills the loop
            log.exception("broker credentials for %s not issued", request.device)
            # The key is registered; the box keeps it and its retry (same token and key)
            # is answered ok again, with credentials issued afresh.
            return EnrolReply("hq_error", "HQ could not issue broker credentials: try again")
        sealed = seal_to(bytes.fromhex(request.public_key), password.encode())
        return EnrolReply(reply.code, reply.message, request.device,
                          base64.b64encode(sealed).decode())

    def start(self) -> None:
        """Connect and serve on paho's thread."""
        self.client.connect(self.opts.host, self.opts.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop serving."""
        self.client.disconnect()
        self.client.loop_stop()
