"""The composition root: settings in, a running server and its collaborators out.

Nothing here runs at import time; ``build_application`` is called from inside
the event loop by ``oriserver serve`` and by the tests, which pass their own
settings (port 0) through the same door.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from oriserver.config.settings import Settings
from oriserver.rpc.mathhelper import MathHelperServicer
from oriserver.rpc.observe import ObservingInterceptor, RpcObserver
from oriserver.rpc.server import BuiltServer, ServerParts, create_server, set_serving
from oriserver.service.calculations import CalculationService
from oriserver.service.recording import NullRecorder, Recorder

log = logging.getLogger("oriserver")


@dataclass
class Application:
    """A built server with the lifecycle the entrypoint drives."""

    settings: Settings
    built: BuiltServer
    recorder: Recorder
    interceptor: ObservingInterceptor
    stopping: bool = field(default=False)

    @property
    def port(self) -> int:
        return self.built.port

    async def start(self) -> None:
        await self.built.server.start()
        await set_serving(self.built, serving=True)

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, refuse new calls, let in-flight ones finish, then flush."""
        if self.stopping:
            return
        self.stopping = True
        grace = self.settings.shutdown_grace_s if grace is None else grace
        await set_serving(self.built, serving=False)
        # Give Watch streams a moment to deliver NOT_SERVING before they are ended.
        await asyncio.sleep(0.1)
        self.interceptor.close_streams()
        await self.built.server.stop(grace)


def build_application(settings: Settings) -> Application:
    """Wire the real adapters for these settings; call inside the running event loop."""
    recorder: Recorder = NullRecorder()
    calculations = CalculationService(recorder, settings.instance_id)
    interceptor = ObservingInterceptor(RpcObserver(settings.log_rpcs))
    parts = ServerParts(
        mathhelper=MathHelperServicer(calculations),
        interceptors=[interceptor],
        reflection=settings.reflection,
        options=settings.transport.limits.grpc_options(),
    )
    built = create_server(parts, settings.bind_address, settings.transport.tls)
    return Application(settings, built, recorder, interceptor)
