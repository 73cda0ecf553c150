import SwitchyardDeploy
import SwitchyardRouting

/// `GET` from the admin API, for the CLI (never used by the proxy itself).
enum AdminClient {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The body of a 200 answer to `GET path`; anything else is an error that says what happened.
    static func get(_ path: String, from endpoint: Endpoint) throws -> [UInt8] {
        let response: HTTPClient.Response
        do {
            response = try HTTPClient.send("GET", path, to: endpoint)
        } catch {
            throw Failure(description: "cannot reach the admin API at \(endpoint) (\(error)); is Switchyard running? Give its admin address with --admin host:port")
        }
        guard response.status == 200 else {
            throw Failure(description: "GET \(path) at \(endpoint) answered \(response.status): \(response.text)")
        }
        return response.body
    }
}
