/// The Lua scripts of ``RedisRoster``: each roster operation is one script, so Redis applies
/// it atomically and in one order with every other, and publishes its effects to the node
/// channels of the sessions concerned from inside the script (issue #13).
///
/// Encodings shared with ``RosterWire``: a length-prefixed string is `lp(s)` = 4-byte
/// big-endian length + bytes; a peer record (the value in the room's `peers` hash) is
/// `lp(sessionId) lp(node) lp(joinedAtMs) lp(metadata)`; a log entry is one kind byte
/// (`s` signal, `b` broadcast) + the frame. Channel payloads are events back to back, each a
/// type byte and its fields (see ``RosterWire/decodeEvents(_:)``).
enum RosterScripts {
    /// Helpers every script starts with.
    static let prelude = """
        local function lp(s) return struct.pack('>I4', #s) .. s end
        local function field(blob, at)
          local n = struct.unpack('>I4', blob, at)
          return string.sub(blob, at + 4, at + 3 + n), at + 4 + n
        end
        local function sessionAndNode(record)
          local session, at = field(record, 1)
          local node, rest = field(record, at)
          return session, node, rest
        end
        local function channel(node) return ARGV[1] .. node .. ARGV[2] end
        -- The sessions a node hosts (for the reaper when it dies): `<prefix>:{node:<id>}:sessions`.
        local function nodeSet(node) return ARGV[1] .. node .. '}:sessions' end
        local function member(tenant, room, peer, session) return lp(tenant) .. lp(room) .. lp(peer) .. lp(session) end
        local function publishToRoom(nodes, payload)
          for _, node in ipairs(redis.call('HKEYS', nodes)) do redis.call('PUBLISH', channel(node), payload) end
        end
        local function dropNode(nodes, node)
          if redis.call('HINCRBY', nodes, node, -1) <= 0 then redis.call('HDEL', nodes, node) end
        end

        """

    /// KEYS: peers, nodes, tenant connections, new session's state, new session's log.
    /// ARGV: channel prefix, channel suffix, room key prefix, tenant, room, peer id, session
    /// id, node, record, max peers, max connections, resume secret (kept as its SHA-1),
    /// state TTL (ms).
    /// Returns `{'ok', previous record or false, others as a flat field/value array}`,
    /// `{'room_full'}` or `{'too_many_connections'}`.
    static let join = RedisScript(prelude + """
        local peers, nodes, conns, state, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
        local tenant, room, peer, session, node, record = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
        local previous = redis.call('HGET', peers, peer)
        local events = ''
        if previous then
          local oldSession, oldNode = sessionAndNode(previous)
          dropNode(nodes, oldNode)
          redis.call('DEL', ARGV[3] .. ':s:' .. oldSession, ARGV[3] .. ':log:' .. oldSession)
          redis.call('PUBLISH', channel(oldNode), 'R' .. lp(oldSession))
          redis.call('SREM', nodeSet(oldNode), member(tenant, room, peer, oldSession))
          events = 'L' .. lp(tenant) .. lp(room) .. lp(peer) .. lp(oldSession) .. lp('left')
        else
          if redis.call('HLEN', peers) >= tonumber(ARGV[10]) then return {'room_full'} end
          if tonumber(redis.call('GET', conns) or '0') >= tonumber(ARGV[11]) then return {'too_many_connections'} end
          redis.call('INCR', conns)
        end
        local others = redis.call('HGETALL', peers)
        redis.call('HSET', peers, peer, record)
        redis.call('HINCRBY', nodes, node, 1)
        redis.call('SADD', nodeSet(node), member(tenant, room, peer, session))
        redis.call('DEL', log)
        redis.call('HSET', state, 'seq', 0, 'bytes', 0, 'secret', redis.sha1hex(ARGV[12]))
        redis.call('PEXPIRE', state, ARGV[13])
        publishToRoom(nodes, events .. 'J' .. lp(tenant) .. lp(room) .. lp(peer) .. lp(record))
        return {'ok', previous or false, others}
        """)

    /// KEYS: peers, nodes, tenant connections, state, log.
    /// ARGV: channel prefix, channel suffix, tenant, room, peer id, session id, reason, the
    /// node it must be on ('' for any: the reaper's leave misses a session resumed elsewhere).
    /// Returns 1 when the session left, 0 when it was not the room's session for the peer.
    static let leave = RedisScript(prelude + """
        local peers, nodes, conns, state, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
        local tenant, room, peer, session = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
        local current = redis.call('HGET', peers, peer)
        if not current then return 0 end
        local currentSession, node = sessionAndNode(current)
        if currentSession ~= session then return 0 end
        if ARGV[8] ~= '' and node ~= ARGV[8] then return 0 end
        redis.call('DEL', state, log)
        redis.call('HDEL', peers, peer)
        redis.call('SREM', nodeSet(node), member(tenant, room, peer, session))
        dropNode(nodes, node)
        if redis.call('DECR', conns) <= 0 then redis.call('DEL', conns) end
        publishToRoom(nodes, 'L' .. lp(tenant) .. lp(room) .. lp(peer) .. lp(session) .. lp(ARGV[7]))
        return 1
        """)

    /// KEYS: peers, nodes. ARGV: channel prefix, channel suffix, tenant, room, peer id,
    /// session id, metadata. Returns 1, or 0 when the session is not the peer's.
    static let update = RedisScript(prelude + """
        local peers, nodes = KEYS[1], KEYS[2]
        local tenant, room, peer, session, metadata = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
        local current = redis.call('HGET', peers, peer)
        if not current then return 0 end
        local currentSession, node, at = sessionAndNode(current)
        if currentSession ~= session then return 0 end
        local joinedAt = field(current, at)
        redis.call('HSET', peers, peer, lp(session) .. lp(node) .. lp(joinedAt) .. lp(metadata))
        publishToRoom(nodes, 'U' .. lp(tenant) .. lp(room) .. lp(peer) .. lp(session) .. lp(metadata))
        return 1
        """)

    /// KEYS: peers, nodes, state, log. ARGV: channel prefix, channel suffix, peer id, session
    /// id, resume secret, last seq, node, state TTL (ms), tenant, room.
    /// Returns `{'ok', seq, frames, peers (flat)}`, `{'unknown'}` or `{'gap'}`.
    static let resume = RedisScript(prelude + """
        local peers, nodes, state, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
        local peer, session, node = ARGV[3], ARGV[4], ARGV[7]
        local current = redis.call('HGET', peers, peer)
        if not current then return {'unknown'} end
        local currentSession, oldNode, at = sessionAndNode(current)
        if currentSession ~= session or redis.call('HGET', state, 'secret') ~= redis.sha1hex(ARGV[5]) then return {'unknown'} end
        local seq = tonumber(redis.call('HGET', state, 'seq') or '0')
        local last = tonumber(ARGV[6])
        if last > seq then return {'gap'} end
        local frames = {}
        if last < seq then
          local kept = redis.call('LLEN', log)
          if seq - last > kept then return {'gap'} end
          frames = redis.call('LRANGE', log, kept - (seq - last), -1)
        end
        if oldNode ~= node then
          dropNode(nodes, oldNode)
          redis.call('HINCRBY', nodes, node, 1)
          redis.call('HSET', peers, peer, lp(session) .. lp(node) .. string.sub(current, at))
          redis.call('PUBLISH', channel(oldNode), 'M' .. lp(session))
          redis.call('SREM', nodeSet(oldNode), member(ARGV[9], ARGV[10], peer, session))
          redis.call('SADD', nodeSet(node), member(ARGV[9], ARGV[10], peer, session))
        end
        redis.call('PEXPIRE', state, ARGV[8])
        redis.call('PEXPIRE', log, ARGV[8])
        redis.call('PUBLISH', channel(node), 'A' .. lp(session))
        return {'ok', seq, frames, redis.call('HGETALL', peers)}
        """)

    /// KEYS: peers, nodes, tenant connections, state. ARGV: channel prefix, channel suffix,
    /// tenant, room, peer id, session id, node, record, resume secret, seq, state TTL (ms).
    /// Returns 'restored', 'kept', 'replaced' or 'moved' (see ``RosterRestoreOutcome``).
    static let restore = RedisScript(prelude + """
        local peers, nodes, conns, state = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
        local tenant, room, peer, session, node = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
        local current = redis.call('HGET', peers, peer)
        if current then
          local currentSession, currentNode = sessionAndNode(current)
          if currentSession ~= session then return 'replaced' end
          if currentNode ~= node then return 'moved' end
          return 'kept'
        end
        redis.call('HSET', peers, peer, ARGV[8])
        redis.call('HINCRBY', nodes, node, 1)
        redis.call('INCR', conns)
        redis.call('SADD', nodeSet(node), member(tenant, room, peer, session))
        if redis.call('EXISTS', state) == 0 then
          redis.call('HSET', state, 'seq', ARGV[10], 'bytes', 0, 'secret', redis.sha1hex(ARGV[9]))
          redis.call('PEXPIRE', state, ARGV[11])
        end
        return 'restored'
        """)

    /// `signal`/`broadcast` relays — all those a node collected in one event-loop turn, in
    /// one call, applied in order: per recipient `seq` incremented, the frame appended to its
    /// log and the log trimmed; every destination node gets one publish with all its
    /// deliveries, in order. KEYS: the peers hash of each relay. ARGV: channel prefix,
    /// channel suffix, most frames kept, most bytes kept, state TTL (ms), then six per relay:
    /// room key prefix, receiving peer id ('' for a broadcast), peer id a broadcast skips,
    /// kind byte, frame prefix, frame suffix.
    /// Returns one entry per relay: `{recipients, nodes}`, or -1 (receiving peer not there).
    static let relayBatch = RedisScript(prelude + """
        local maxFrames, maxBytes, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
        local out = {}
        local byNode, order = {}, {}
        for i = 1, #KEYS do
          local at = 5 + (i - 1) * 6
          local room, to, skip, kind, prefix, suffix = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4], ARGV[at + 5], ARGV[at + 6]
          local targets = {}
          local missing = false
          if to ~= '' then
            local record = redis.call('HGET', KEYS[i], to)
            if record then targets[1] = record else missing = true end
          else
            local all = redis.call('HGETALL', KEYS[i])
            for j = 1, #all, 2 do
              if all[j] ~= skip then targets[#targets + 1] = all[j + 1] end
            end
          end
          if missing then
            out[i] = -1
          else
            local mine, mineOrder = {}, {}
            for _, record in ipairs(targets) do
              local session, node = sessionAndNode(record)
              local state, log = room .. ':s:' .. session, room .. ':log:' .. session
              local seq = redis.call('HINCRBY', state, 'seq', 1)
              local entry = kind .. prefix .. seq .. suffix
              local kept = redis.call('RPUSH', log, entry)
              local bytes = redis.call('HINCRBY', state, 'bytes', #entry)
              while kept > maxFrames or (bytes > maxBytes and kept > 1) do
                local dropped = redis.call('LPOP', log)
                bytes = redis.call('HINCRBY', state, 'bytes', -#dropped)
                kept = kept - 1
              end
              if seq == 1 then redis.call('PEXPIRE', log, ttl) end
              if not mine[node] then
                mine[node] = {}
                mineOrder[#mineOrder + 1] = node
              end
              local list = mine[node]
              list[#list + 1] = lp(session) .. lp(tostring(seq))
            end
            for _, node in ipairs(mineOrder) do
              local list = mine[node]
              if not byNode[node] then
                byNode[node] = {}
                order[#order + 1] = node
              end
              local events = byNode[node]
              events[#events + 1] = 'D' .. kind .. lp(prefix) .. lp(suffix) .. struct.pack('>I4', #list) .. table.concat(list)
            end
            out[i] = {#targets, #mineOrder}
          end
        end
        for _, node in ipairs(order) do
          redis.call('PUBLISH', channel(node), table.concat(byNode[node]))
        end
        return out
        """)
}
