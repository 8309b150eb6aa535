#if canImport(Glibc)
import Glibc
#endif

/// Raises the soft open-files limit to the hard limit, so a node (or the load generator)
/// can hold as many sockets as the machine allows.
enum ResourceLimits {
    static func raiseOpenFiles() {
        #if canImport(Glibc)
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        #endif
    }
}
