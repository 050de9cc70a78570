"""The fault suite's clients: each a thread that keeps going through every fault and keeps
score of every answer it got (2xx, 503 with or without Retry-After, 500, cut off)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any
from uuid import UUID, uuid4

import httpx

from funnel_common.signing import SIGNATURE_HEADER, sign
from funnel_tools.embedded import wait_until
from funnel_tools.seed import DEMO_FORM, REJECTIONS

# Qualified by config/qualification.yaml (as `funnel seed` plans them): a senior title
# at a mid-sized company in a core country. The Americas team takes the US.
QUALIFIED = {
    "first_name": "Ada",
    "last_name": "Okafor",
    "company": "Globex",
    "title": "VP Sales",
    "company_size": 500,
    "country": "US",
    "source": "faults",
    "campaign": "chaos",
}
# Demo requests left to breach are marked in their address; the reps leave them alone.
HOT = "hot-"
HOT_POLICY = "seed-hot"  # funnel seed's policy for demo requests (tests/faults/readback.py)


class Stream:
    """A client in a thread, keeping score of every answer."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._guarded, daemon=True)
        self.statuses: Counter[int] = Counter()
        self.unavailable_without_retry_after = 0
        self.connection_errors = 0
        self.server_errors: list[str] = []  # what got a 500, to say where
        self.failure: BaseException | None = None

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), f"{type(self).__name__} did not stop"
        assert self.failure is None, f"{type(self).__name__} failed: {self.failure!r}"

    def _guarded(self) -> None:
        try:
            self._run()
        except BaseException as error:  # surfaced by stop(), in the test's thread
            self.failure = error

    def _run(self) -> None:
        raise NotImplementedError

    def _send(
        self, client: httpx.Client, method: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        """One request, scored; None when it was cut off (the service or its host is down)."""
        try:
            answer = client.request(method, url, **kwargs)
        except httpx.HTTPError:
            self.connection_errors += 1
            self._stop.wait(0.05)
            return None
        self.statuses[answer.status_code] += 1
        if answer.status_code >= 500 and answer.status_code != 503:
            self.server_errors.append(f"{method} {url}: {answer.status_code} {answer.text[:300]}")
        if answer.status_code == 503 and "retry-after" not in answer.headers:
            self.unavailable_without_retry_after += 1
        return answer


class LeadStream(Stream):
    """Leads back to back: plain ones (captured), qualified ones for the reps, and every
    tenth a demo request (a seconds-long SLA) that nobody answers, so it breaches."""

    def __init__(self, intake: str, import_secret: str) -> None:
        super().__init__()
        self._url = f"{intake}/v1/leads"
        self._secret = import_secret
        self.accepted: list[UUID] = []

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            for number in range(1_000_000):
                if self._stop.is_set():
                    return
                tag = uuid4().hex[:12]
                kind = number % 10
                if kind == 9:
                    lead = {**QUALIFIED, **DEMO_FORM, "email": f"{HOT}{tag}@globex.example.com"}
                elif kind % 3 == 0:
                    lead = {**QUALIFIED, "email": f"vp-{tag}@globex.example.com"}
                else:
                    lead = {"email": f"fault-{tag}@example.com", "source": "faults"}
                raw = json.dumps(lead).encode()
                headers = {"content-type": "application/json"}
                if kind == 9:
                    # The landing page's form takes posts from its origin only; a signed
                    # import is trusted (as `funnel seed` posts its demo requests).
                    headers[SIGNATURE_HEADER] = sign(self._secret, int(time.time()), raw)
                answer = self._send(client, "POST", self._url, content=raw, headers=headers)
                if answer is not None and answer.status_code == 202:
                    # Anonymous and signed posts alike name their submission.
                    self.accepted.append(UUID(answer.json()["receipt_id"]))
                self._stop.wait(0.02)

    def wait_for_more(self, count: int, timeout: float = 60) -> None:
        target = len(self.accepted) + count
        wait_until(
            lambda: len(self.accepted) >= target or self.failure is not None,
            timeout=timeout,
            what=f"{count} more leads",
        )
        assert self.failure is None, repr(self.failure)


class DecisionStream(Stream):
    """Reps working their queues: list the open handoffs, accept four in five, reject the
    rest with a reason. Demo requests marked hot are left to breach."""

    def __init__(self, handoff: str, rep_tokens: dict[str, str]) -> None:
        super().__init__()
        self._handoff = handoff
        self._tokens = rep_tokens
        self.decided: dict[UUID, str] = {}  # handoff -> "accepted" / "rejected", from a 2xx
        self.accepted_emails: list[str] = []
        self.conflicts = 0

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                for token in self._tokens.values():
                    self._work_queue(client, {"authorization": f"Bearer {token}"})
                self._stop.wait(0.05)

    def _work_queue(self, client: httpx.Client, headers: dict[str, str]) -> None:
        listed = self._send(
            client,
            "GET",
            f"{self._handoff}/v1/handoffs",
            params={"status": "assigned", "limit": 50},
            headers=headers,
        )
        if listed is None or listed.status_code != 200:
            return
        for item in listed.json()["items"]:
            email = str(item["profile"].get("email", ""))
            # A demo request is known by its SLA policy, not its (sealed) email; a lead
            # whose key has not reached handoff yet (funnel.people is another topic, so on
            # Apache Kafka it may come later) shows no email: decided on a later pass.
            hot = item["policy"] == HOT_POLICY or email.startswith(HOT)
            if hot or not email or self._stop.is_set():
                continue
            handoff_id = UUID(item["handoff_id"])
            url = f"{self._handoff}/v1/handoffs/{handoff_id}"
            if len(self.decided) % 5 == 4:
                reason = REJECTIONS[len(self.decided) % len(REJECTIONS)]
                body: dict[str, str] = {"reason": reason}
                if reason == "other":
                    body["note"] = "reseller, not an end customer"
                answer = self._send(client, "POST", f"{url}/reject", json=body, headers=headers)
                outcome = "rejected"
            else:
                answer = self._send(client, "POST", f"{url}/accept", headers=headers)
                outcome = "accepted"
            if answer is None:
                continue
            if answer.is_success:
                self.decided[handoff_id] = outcome
                if outcome == "accepted":
                    self.accepted_emails.append(email)
            elif answer.status_code == 409:
                self.conflicts += 1  # decided by a request whose answer a kill cut off


class WebhookStream(Stream):
    """The CRM and billing, as they deliver: for each accepted lead a deal is opened,
    updated, then won (the customer is activated, grows, every third churns) or lost.
    Each delivery is retried with its webhook id until it gets a definite answer."""

    def __init__(
        self, intake: str, crm_secret: str, billing_secret: str, accepted: list[str]
    ) -> None:
        super().__init__()
        self._intake = intake
        self._secrets = {"/v1/deals": crm_secret, "/v1/accounts/events": billing_secret}
        self._accepted = accepted  # the reps' accepted leads, appended by their thread
        self.delivered: dict[str, set[str]] = {"/v1/deals": set(), "/v1/accounts/events": set()}
        self.refused: list[str] = []
        self.expected_deals: dict[str, str] = {}  # deal -> status after its 2xx webhooks
        self.expected_accounts: dict[str, str] = {}  # account -> status
        self.in_progress = ""  # the deal being delivered when told to stop

    def _run(self) -> None:
        today = time.strftime("%Y-%m-%d", time.gmtime())
        with httpx.Client(base_url=self._intake, timeout=10) as client:
            for number in range(1_000_000):
                while number >= len(self._accepted):
                    if self._stop.wait(0.05):
                        return
                email = self._accepted[number]
                deal_id, account_id = f"F-D{number}", f"F-A{number}"
                amount = 10_000_00 + 500_00 * (number % 17)
                base = {"deal_id": deal_id}
                steps: list[tuple[str, dict[str, Any]]] = [
                    ("/v1/deals", {**base, "event": "opened", "email": email,
                                   "amount_cents": amount, "stage": "discovery",
                                   "expected_close_date": "2026-12-15"}),
                    ("/v1/deals", {**base, "event": "updated", "stage": "proposal",
                                   "amount_cents": amount + 1_000_00}),
                ]  # fmt: skip
                if number % 3 == 2:
                    steps.append(("/v1/deals", {**base, "event": "lost", "reason": "price",
                                                "closed_on": today}))  # fmt: skip
                else:
                    arr = amount + 1_000_00
                    steps += [
                        ("/v1/deals", {**base, "event": "won", "closed_on": today}),
                        ("/v1/accounts/events", {"event": "activated", "account_id": account_id,
                                                 "arr_cents": arr, "deal_id": deal_id}),
                        ("/v1/accounts/events", {"event": "arr_changed",
                                                 "account_id": account_id, "arr_cents": arr * 2}),
                    ]  # fmt: skip
                    if number % 3 == 0:
                        steps.append(
                            ("/v1/accounts/events", {"event": "churned", "account_id": account_id})
                        )
                self.in_progress = deal_id
                for step, (path, payload) in enumerate(steps):
                    webhook_id = f"faults-{deal_id}-{step}"
                    if not self._deliver(client, path, {"webhook_id": webhook_id, **payload}):
                        return
                    self._expect(payload)

    def _deliver(self, client: httpx.Client, path: str, payload: dict[str, Any]) -> bool:
        """Until a definite answer, as a CRM retries; False when told to stop first."""
        raw = json.dumps(payload).encode()
        while not self._stop.is_set():
            signed_at = int(time.time())
            headers = {
                "content-type": "application/json",
                SIGNATURE_HEADER: sign(self._secrets[path], signed_at, raw),
            }
            answer = self._send(client, "POST", path, content=raw, headers=headers)
            if answer is not None and answer.is_success:
                self.delivered[path].add(payload["webhook_id"])
                return True
            if answer is not None and answer.status_code < 500:
                self.refused.append(f"{payload['webhook_id']}: {answer.status_code} {answer.text}")
                return True
            # A retry is signed anew, in a later second: a signature is used once.
            self._stop.wait(max(0.05, signed_at + 1 - time.time()))
        return False

    def _expect(self, payload: dict[str, Any]) -> None:
        event = payload["event"]
        if "deal_id" in payload and "account_id" not in payload:
            self.expected_deals[payload["deal_id"]] = {"won": "won", "lost": "lost"}.get(
                event, "open"
            )
        else:
            status = "churned" if event == "churned" else "active"
            self.expected_accounts[payload["account_id"]] = status
