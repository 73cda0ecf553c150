/// What `switchyard --version` and `switchyard_build_info` report.
public enum BuildInfo {
    public static let version = "0.1.0"
}
