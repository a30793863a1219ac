"""The site's own ClientApp runner: Flower delivers messages, the site's privehr answers them.

Why this exists (the offline mechanism that keeps coordinator code away from the store):
by default a SuperNode installs the app bundle (FAB) the SuperLink sends and runs *its*
ClientApp code, one process per message, as the SuperNode's user. A malicious coordinator
could ship a ClientApp that reads the store. Flower 1.42's ``--trusted-entities`` check needs
signatures from Flower Hub, unusable offline. Instead ``privehr site start`` runs the
SuperNode with ``--isolation process``: the SuperNode then launches nothing and only queues
tasks on its local Runtime API, and this worker — the site's installed privehr — acquires
each task, reads the message, and answers with the site's own ``SiteRuntime``. The FAB is
pulled by Flower but never unpacked, imported or executed here; its hash is recorded in the
site's audit log. The worker also keeps one process alive across a round, so SecAgg state
stays in memory instead of being serialised between per-message processes.

The Runtime API calls mirror ``flwr.supernode.runtime.run_clientapp`` (flwr 1.42): acquire a
task with ``AcquireTask``, pull its input with the task token, push the reply and the final
task status. Every task gets a reply (an error reply if need be): a SuperNode waits for one.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from privehr.deploy import records as R
from privehr.deploy.site_runtime import SiteRuntime

log = logging.getLogger(__name__)

WHOAMI = "whoami"  # stage name of the identity probe used when SuperNodes are not registered


def _client(address: str, component: str, token: str | None = None, secret: bytes | None = None):
    from flwr.supercore.interceptors import (
        RuntimeTokenHttpInterceptor,
        RuntimeVersionHttpInterceptor,
    )
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient
    from flwr.supercore.runtime.tracing import RuntimeTracingInterceptor

    interceptors: list[Any] = [RuntimeTracingInterceptor(), RuntimeVersionHttpInterceptor(component_name=component)]
    if token is not None:
        interceptors.append(RuntimeTokenHttpInterceptor(token))
    if secret:
        from flwr.supercore.interceptors import SuperExecAuthHttpInterceptor

        interceptors.append(SuperExecAuthHttpInterceptor(master_secret=secret,
                                                         protected_methods=frozenset({"/flwr.proto.Runtime/AcquireTask"})))
    return RuntimeHttpClient.from_server_address(server_address=address, insecure=True, root_certificates=None,
                                                 interceptors=interceptors,
                                                 retry_invoker=make_simple_http_retry_invoker())


def answer(runtime: SiteRuntime, message: Any) -> Any:
    """Turn one Flower message into its reply using only the site's installed code."""
    from flwr.app import ConfigRecord, Error, Message, RecordDict

    if message.metadata.message_type != R.MESSAGE_TYPE:
        return Message(Error(code=2, reason="privehr site: unsupported message type"), reply_to=message)
    try:
        rec = message.content[R.RECORD]
        stage = str(rec.get(R.STAGE, ""))
        if stage == WHOAMI:
            return Message(RecordDict({R.RECORD: ConfigRecord({R.PAYLOAD: b"", "site": runtime.name})}),
                           reply_to=message)
        payload, study, config = rec[R.PAYLOAD], str(rec[R.STUDY]), str(rec[R.CONFIG])
        head = rec.get(R.HEAD, b"")
    except (KeyError, TypeError):
        return Message(Error(code=2, reason="privehr site: malformed request"), reply_to=message)
    if not isinstance(payload, bytes):
        return Message(Error(code=2, reason="privehr site: malformed request"), reply_to=message)
    reply, my_head = runtime.handle(payload, study_hash=study, config=config,
                                    coordinator_head=head if isinstance(head, bytes) else None, stage=stage)
    return Message(RecordDict({R.RECORD: ConfigRecord({R.PAYLOAD: reply, R.HEAD: my_head})}), reply_to=message)


class SiteWorker:
    """Acquire tasks from the local SuperNode and answer them, until ``stop`` is set."""

    def __init__(self, runtime: SiteRuntime, runtime_api: str, *, poll_s: float = 0.2,
                 superexec_secret: bytes | None = None):
        self.runtime = runtime
        self.address = runtime_api
        self.poll_s = poll_s
        self.secret = superexec_secret
        self.stop = threading.Event()
        self.handled = 0
        self._runs_seen: set[int] = set()

    def serve(self) -> None:
        from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=E0611
        from flwr.supercore.constant import TaskType

        client = _client(self.address, "SuperExec", secret=self.secret)
        try:
            while not self.stop.is_set():
                try:
                    res = client.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP],
                                                                agentapp_fab_hashes=[]))
                except Exception as exc:  # noqa: BLE001 - SuperNode not up yet or restarting
                    log.debug("AcquireTask failed: %s", type(exc).__name__)
                    self.stop.wait(1.0)
                    continue
                if res.HasField("task") and res.token:
                    self._run_task(res.token)
                else:
                    self.stop.wait(self.poll_s)
        finally:
            client.close()

    def _run_task(self, token: str) -> None:
        from flwr.common.constant import SubStatus
        from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
        from flwr.supernode.runtime.run_clientapp import (
            pull_task_input,
            push_message,
            push_task_output,
        )

        client = _client(self.address, "flwr-clientapp", token=token)
        heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
        heartbeat.start()
        context, status, details = None, SubStatus.FAILED, "privehr site worker failed"
        try:
            t0 = time.perf_counter()
            message, context, run, fab = pull_task_input(client)  # the FAB is never installed
            if run.run_id not in self._runs_seen:
                self._runs_seen.add(run.run_id)
                self.runtime.audit.append("connect", run=int(run.run_id), fab_hash=fab.hash_str,
                                          text="FAB received, not executed (process isolation)")
            try:
                reply = answer(self.runtime, message)
            except Exception as exc:  # noqa: BLE001 - the SuperNode blocks until it gets a reply
                from flwr.app import Error, Message

                log.warning("site %s: answer failed: %s", self.runtime.name, type(exc).__name__)
                reply = Message(Error(code=2, reason="privehr site: internal error"), reply_to=message)
            push_message(client, reply, context)
            status, details = SubStatus.COMPLETED, ""
            self.handled += 1
            log.info("site %s answered %s in %.2f s", self.runtime.name, message.metadata.message_type,
                     time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - the SuperNode must get a final status
            log.warning("site %s: task failed: %s", self.runtime.name, type(exc).__name__)
        finally:
            try:
                push_task_output(client=client, context=context, sub_status=status, details=details)
            finally:
                heartbeat.stop()
                client.close()
