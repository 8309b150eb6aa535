import Hummingbird
import Prometheus
import Signaling

/// The admin port (SPEC §4): `/metrics`, `/healthz`, `/readyz`.
struct AdminRoutes {
    let node: Node
    let registry: PrometheusCollectorRegistry

    func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.get("metrics") { _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        router.get("healthz") { _, _ -> Response in
            Self.json(.ok, #"{"status":"ok"}"#)
        }
        router.get("readyz") { _, _ -> Response in
            let checks = await node.readiness()
            let ready = checks.allSatisfy { $0.value == "ok" }
            var writer = JSONWriter()
            writer.beginObject()
            writer.field("status", ready ? "ready" : "not_ready")
            writer.key("checks")
            writer.beginObject()
            for (name, value) in checks.sorted(by: { $0.key < $1.key }) { writer.field(name, value) }
            writer.endObject()
            writer.endObject()
            return Self.json(ready ? .ok : .serviceUnavailable, String(decoding: writer.bytes, as: UTF8.self))
        }
        return router
    }

    private static func json(_ status: HTTPResponse.Status, _ text: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
