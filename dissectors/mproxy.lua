-- GENERATED FILE: DO NOT EDIT.
-- Made by `mproxy lua -o dissectors/mproxy.lua` from mproxy_scapy/spec.py,
-- mproxy_scapy/wireshark/mproxy.lua.in and stats.lua.in; edit those and regenerate.
--
-- M-PROXY (proxy-packer / telebit) dissector for Wireshark 4.0+ (Lua 5.2 API).
--
-- How tunnels are found (no Decode As needed, on any port):
--  * raw TCP: a heuristic on "tcp" (0xFE, a sane hdrlen, a header that parses)
--    claims the connection; TCP reassembly with desegment_offset/len, always
--    DESEGMENT_ONE_MORE_SEGMENT so the parser sees what the Python parser sees;
--    a port-range preference and Decode As also work;
--  * WebSocket: the same heuristic sees a telebit upgrade request (access_token,
--    versions, or a Bearer header) and claims the connection for our own
--    streaming unframer; http hands every other upgraded connection (also
--    wss, after TLS) to us through the http.upgrade "websocket" entry, and we
--    unframe it when its first message is M-PROXY, else pass it to Wireshark's
--    websocket dissector; messages that reach that dissector anyway (Decode
--    As) come through the "ws" heuristic, reassembled across messages here.
--
-- The frame parser is a port of mproxy_scapy/parser.py (FrameParser): the same
-- resynchronisation rule and problem names, so Wireshark and `mproxy dissect`
-- agree frame for frame. The first pass parses and keeps every record with a
-- copy of its bytes under the packet that completed it; later passes
-- (tshark -2, the GUI) show the kept records from a postdissector.

local mproxy = Proto("mproxy", "M-PROXY tunnel protocol")

----------------------------------------------------------------------------
-- Tables from the spec
----------------------------------------------------------------------------

local VERSION_1_BYTE = 254
local MIN_HEADER_FIELDS = 5
local WRAP = 256
local MAX_AHEAD = 1073741824 -- an acknowledgement this far past the stream is not believed
local MAX_STASHED = 4194304 -- bytes held past a hole before it is given up (the decoder's default)
local MAX_BODY_HELD = 16777216
local MAX_MESSAGE = 67108864 -- an inflated WebSocket message is cut here (the carrier's default)
local REDACTED = "<redacted>"
local DATA_KIND = "data"

-- header field keys in header order (Lua index = header index + 1)
local HEADER_KEYS = { "family", "address", "port", "datalen", "service", "serviceport", "name", "servicename" }

-- value -> description
local KINDS = {
    ["data"] = "Tunneled client bytes",
    ["control"] = "Control channel message (JSON array)",
    ["connection"] = "A new tunneled connection (relay to device)",
    ["end"] = "The tunneled connection ended",
    ["error"] = "The tunneled connection failed (JSON message and code)",
    ["pause"] = "Stop sending this client's data (byte count as text)",
    ["resume"] = "Resume sending this client's data (byte count as text)",
}
local MESSAGE_KINDS = {
    ["control"] = "Control channel message (JSON array)",
    ["connection"] = "A new tunneled connection (relay to device)",
    ["end"] = "The tunneled connection ended",
    ["error"] = "The tunneled connection failed (JSON message and code)",
    ["pause"] = "Stop sending this client's data (byte count as text)",
    ["resume"] = "Resume sending this client's data (byte count as text)",
}
local KNOWN_SERVICES = {
    ["https"] = "HTTPS (TLS)",
    ["http"] = "HTTP",
    ["ssh"] = "SSH",
    ["tls"] = "TLS",
    ["tcp"] = "Plain TCP",
    ["udp"] = "UDP",
}
local FAMILIES = {
    ["IPv4"] = "IPv4 client",
    ["IPv6"] = "IPv6 client",
    ["tun"] = "Go packer tunnel family",
}
local DIALECTS = {
    ["js"] = "proxy-packer (JavaScript) header",
    ["go"] = "Go packer header (trailing comma and newline)",
}
local CONTROL_COMMANDS = {
    ["hello"] = "Relay greets the device: [id, 'hello', version, [commands]]",
    ["auth"] = "Device authenticates with a token",
    ["add_token"] = "Device adds a token (domains it serves)",
    ["delete_token"] = "Device removes a token",
    ["grant"] = "Relay grants domains or ports",
    ["access_token"] = "Relay hands over an access token",
}
local SECRET_COMMANDS = {
    ["access_token"] = true,
    ["add_token"] = true,
    ["auth"] = true,
    ["grant"] = true,
}
local ERROR_CODES = {
    ["E_UNKNOWN_COMMAND"] = "The peer does not know this control command",
    ["E_UNKNOWN_ERR"] = "Error body missing or not JSON (reference unpacker's fallback)",
    ["E_CONN"] = "Connection to the local service failed",
}
local BODY_SUBDISSECTORS = {
    ["https"] = "tls",
    ["tls"] = "tls",
    ["http"] = "http",
    ["control"] = "json",
    ["error"] = "json",
}
local LABELS = {
    ["family"] = "Family",
    ["address"] = "Address",
    ["port"] = "Port",
    ["datalen"] = "Datalen",
    ["service"] = "Service",
    ["serviceport"] = "Serviceport",
    ["name"] = "Name",
    ["servicename"] = "Servicename",
}

----------------------------------------------------------------------------
-- Fields and expert infos
----------------------------------------------------------------------------

local pf = {
    version = ProtoField.uint8("mproxy.version", "Version", base.HEX, nil, nil, "Version byte, 255 - version (0xFE is v1)"),
    hdrlen = ProtoField.uint8("mproxy.hdrlen", "Hdrlen", base.DEC, nil, nil, "Length in bytes of the text header that follows"),
    family = ProtoField.string("mproxy.family", "Family", "Address family of the tunneled client (IPv4, IPv6; empty in control frames)"),
    address = ProtoField.string("mproxy.address", "Address", "Remote address of the tunneled client"),
    port = ProtoField.uint16("mproxy.port", "Port", base.DEC, nil, nil, "Source port of the tunneled client"),
    datalen = ProtoField.uint64("mproxy.datalen", "Datalen", base.DEC, nil, nil, "Body length in bytes, sent as decimal text"),
    service = ProtoField.string("mproxy.service", "Service", "Service name of the client's data, or the message kind"),
    serviceport = ProtoField.uint16("mproxy.serviceport", "Serviceport", base.DEC, nil, nil, "Relay port the client connected to"),
    name = ProtoField.string("mproxy.name", "Name", "TLS SNI servername or HTTP Host the relay routed by"),
    servicename = ProtoField.string("mproxy.servicename", "Servicename", "Real service of a connection frame (JS 2.x, 8th field)"),
    kind = ProtoField.string("mproxy.kind", "Kind", "Message kind: data, connection, control, end, error, pause, resume"),
    dialect = ProtoField.string("mproxy.dialect", "Dialect", "Header dialect: js (proxy-packer) or go (trailing comma and newline)"),
    client_id = ProtoField.string("mproxy.client_id", "Client id", "Tunneled client identity family,address,port"),
    body = ProtoField.bytes("mproxy.body", "Body", base.NONE, "Frame body"),
    control_id = ProtoField.int32("mproxy.control.id", "Id", base.DEC, nil, nil, "Control message id: > 0 request, < 0 reply to -id, 0 out-of-band error"),
    control_command = ProtoField.string("mproxy.control.command", "Command", "Control command of a request"),
    control_args = ProtoField.string("mproxy.control.args", "Args", "Control arguments as JSON (tokens redacted unless asked)"),
    control_reply_to = ProtoField.framenum("mproxy.control.reply_to", "Reply to", base.NONE, frametype.REQUEST, nil, "Frame holding the request this reply answers"),
    control_replied_in = ProtoField.framenum("mproxy.control.replied_in", "Replied in", base.NONE, frametype.RESPONSE, nil, "Frame holding the reply to this request"),
    control_reply_time = ProtoField.relative_time("mproxy.control.reply_time", "Reply time", "Time between the request and its reply"),
    offset = ProtoField.uint64("mproxy.offset", "Offset", base.DEC, nil, nil, "Offset of this record in its direction's M-PROXY byte stream"),
    length = ProtoField.uint32("mproxy.length", "Length", base.DEC, nil, nil, "Length in bytes of this record (frame, skipped garbage or lost bytes)"),
    src = ProtoField.string("mproxy.src", "Src", "Sender (ip:port) of the tunnel direction this record belongs to"),
    dst = ProtoField.string("mproxy.dst", "Dst", "Receiver (ip:port) of the tunnel direction this record belongs to"),
    body_len = ProtoField.uint32("mproxy.body_len", "Body len", base.DEC, nil, nil, "Body bytes present (fewer than datalen when bytes were lost or the stream ended)"),
    header_in = ProtoField.framenum("mproxy.header_in", "Header in", base.NONE, frametype.NONE, nil, "Frame in which this record's first bytes arrived (Wireshark reassembly link)"),
    reassembled_in = ProtoField.framenum("mproxy.reassembled_in", "Reassembled in", base.NONE, frametype.NONE, nil, "Frame in which the M-PROXY frame started here is complete (Wireshark reassembly link)"),
}
mproxy.fields = {
    pf.version,
    pf.hdrlen,
    pf.family,
    pf.address,
    pf.port,
    pf.datalen,
    pf.service,
    pf.serviceport,
    pf.name,
    pf.servicename,
    pf.kind,
    pf.dialect,
    pf.client_id,
    pf.body,
    pf.control_id,
    pf.control_command,
    pf.control_args,
    pf.control_reply_to,
    pf.control_replied_in,
    pf.control_reply_time,
    pf.offset,
    pf.length,
    pf.src,
    pf.dst,
    pf.body_len,
    pf.header_in,
    pf.reassembled_in,
}

local ex = {
    bad_version = ProtoExpert.new("mproxy.problem.bad_version", "Version byte is not 0xFE (v1)", expert.group.MALFORMED, expert.severity.ERROR),
    datalen_not_numeric = ProtoExpert.new("mproxy.problem.datalen_not_numeric", "datalen is not decimal digits", expert.group.MALFORMED, expert.severity.ERROR),
    datalen_negative = ProtoExpert.new("mproxy.problem.datalen_negative", "datalen is negative", expert.group.MALFORMED, expert.severity.ERROR),
    too_few_fields = ProtoExpert.new("mproxy.problem.too_few_fields", "Header has fewer than 5 comma-separated fields", expert.group.MALFORMED, expert.severity.ERROR),
    hdrlen_wrapped = ProtoExpert.new("mproxy.problem.hdrlen_wrapped", "Header is longer than 255 bytes: hdrlen wrapped modulo 256", expert.group.PROTOCOL, expert.severity.WARN),
    header_not_utf8 = ProtoExpert.new("mproxy.problem.header_not_utf8", "Header is not valid UTF-8", expert.group.PROTOCOL, expert.severity.WARN),
    garbage_skipped = ProtoExpert.new("mproxy.problem.garbage_skipped", "Bytes that are not an M-PROXY frame were skipped", expert.group.PROTOCOL, expert.severity.WARN),
    truncated = ProtoExpert.new("mproxy.problem.truncated", "Stream ended before the frame was complete", expert.group.MALFORMED, expert.severity.WARN),
    gap = ProtoExpert.new("mproxy.problem.gap", "Bytes of the stream were lost in the capture", expert.group.SEQUENCE, expert.severity.WARN),
    bad_body = ProtoExpert.new("mproxy.problem.bad_body", "Body does not hold what its kind requires", expert.group.PROTOCOL, expert.severity.WARN),
}
-- problems of our own WebSocket unframer, named as the Python carrier names them
local carrier_ex = {
    server_frame_masked = ProtoExpert.new("mproxy.carrier.server_frame_masked", "A server-to-client WebSocket frame is masked", expert.group.PROTOCOL, expert.severity.WARN),
    decompression_capped = ProtoExpert.new("mproxy.carrier.decompression_capped", "A compressed WebSocket message inflated past the cap; its rest was dropped", expert.group.PROTOCOL, expert.severity.WARN),
    inflate_error = ProtoExpert.new("mproxy.carrier.inflate_error", "A compressed WebSocket message could not be inflated; its rest was dropped", expert.group.PROTOCOL, expert.severity.WARN),
    gap_in_compressed_message = ProtoExpert.new("mproxy.carrier.gap_in_compressed_message", "Bytes of a compressed WebSocket message were lost; its rest was dropped", expert.group.PROTOCOL, expert.severity.WARN),
    ws_sync_lost = ProtoExpert.new("mproxy.carrier.ws_sync_lost", "The WebSocket framing was lost; scanning for the next frame header", expert.group.PROTOCOL, expert.severity.WARN),
    ws_resynced = ProtoExpert.new("mproxy.carrier.ws_resynced", "The WebSocket framing was found again", expert.group.PROTOCOL, expert.severity.WARN),
}
local carrier_ex_text = {
    ["server_frame_masked"] = "A server-to-client WebSocket frame is masked",
    ["decompression_capped"] = "A compressed WebSocket message inflated past the cap; its rest was dropped",
    ["inflate_error"] = "A compressed WebSocket message could not be inflated; its rest was dropped",
    ["gap_in_compressed_message"] = "Bytes of a compressed WebSocket message were lost; its rest was dropped",
    ["ws_sync_lost"] = "The WebSocket framing was lost; scanning for the next frame header",
    ["ws_resynced"] = "The WebSocket framing was found again",
}
mproxy.experts = {
    ex.bad_version,
    ex.datalen_not_numeric,
    ex.datalen_negative,
    ex.too_few_fields,
    ex.hdrlen_wrapped,
    ex.header_not_utf8,
    ex.garbage_skipped,
    ex.truncated,
    ex.gap,
    ex.bad_body,
    carrier_ex.server_frame_masked,
    carrier_ex.decompression_capped,
    carrier_ex.inflate_error,
    carrier_ex.gap_in_compressed_message,
    carrier_ex.ws_sync_lost,
    carrier_ex.ws_resynced,
}

mproxy.prefs.show_tokens = Pref.bool("Show tokens", false,
    "Show the bearer tokens carried in control arguments (" .. "access_token, add_token, auth, grant" .. "); off: shown as " .. REDACTED)
mproxy.prefs.tcp_ports = Pref.range("Raw M-PROXY TCP ports", "", "TCP ports always decoded as raw M-PROXY", 65535)
mproxy.prefs.subdissectors = Pref.bool("Dissect bodies", true,
    "Hand bodies to the dissector of their service (tls, http, json)")

----------------------------------------------------------------------------
-- Text helpers
----------------------------------------------------------------------------

local ASCII_WS = "[ \t\n\r\v\f\28\29\30\31]"

local function strip(text)
    return (text:gsub("^" .. ASCII_WS .. "+", ""):gsub(ASCII_WS .. "+$", ""))
end

local function is_digits(text)
    return text ~= nil and text:match("^%d+$") ~= nil
end

-- Length of the UTF-8 sequence at i, or nil and the length of its longest valid prefix.
local function utf8_sequence(s, i)
    local c = s:byte(i)
    local extra, low, high
    if c < 0x80 then return 1 end
    if c >= 0xC2 and c <= 0xDF then extra, low, high = 1, 0x80, 0xBF
    elseif c == 0xE0 then extra, low, high = 2, 0xA0, 0xBF
    elseif c == 0xED then extra, low, high = 2, 0x80, 0x9F
    elseif c >= 0xE1 and c <= 0xEF then extra, low, high = 2, 0x80, 0xBF
    elseif c == 0xF0 then extra, low, high = 3, 0x90, 0xBF
    elseif c == 0xF4 then extra, low, high = 3, 0x80, 0x8F
    elseif c >= 0xF1 and c <= 0xF3 then extra, low, high = 3, 0x80, 0xBF
    else return nil, 1 end
    local second = s:byte(i + 1)
    if second == nil or second < low or second > high then return nil, 1 end
    for k = 2, extra do
        local b = s:byte(i + k)
        if b == nil or b < 0x80 or b > 0xBF then return nil, k end
    end
    return extra + 1
end

local function is_utf8(s)
    if not s:find("[\128-\255]") then return true end
    local i = 1
    while i <= #s do
        local length = utf8_sequence(s, i)
        if length == nil then return false end
        i = i + length
    end
    return true
end

-- Python's bytes.decode("utf-8", "replace"): each broken sequence becomes U+FFFD.
local function utf8_replace(s)
    if is_utf8(s) then return s end
    local out, i = {}, 1
    while i <= #s do
        local length, bad = utf8_sequence(s, i)
        if length then
            out[#out + 1] = s:sub(i, i + length - 1)
            i = i + length
        else
            out[#out + 1] = "\239\191\189"
            i = i + bad
        end
    end
    return table.concat(out)
end

-- Python's repr() of a str, as the Python decoder writes it into problem details.
local function py_repr(text)
    local quote = "'"
    if text:find("'", 1, true) and not text:find('"', 1, true) then quote = '"' end
    local escaped = text:gsub("[%z\1-\31\127\\'\"]", function(c)
        if c == "\\" then return "\\\\" end
        if c == quote then return "\\" .. c end
        if c == '"' or c == "'" then return c end
        if c == "\n" then return "\\n" end
        if c == "\r" then return "\\r" end
        if c == "\t" then return "\\t" end
        return string.format("\\x%02x", c:byte())
    end)
    return quote .. escaped .. quote
end

-- UInt64.fromdecimal arrived after Wireshark 4.0
local function uint64_from_decimal(text)
    local value = UInt64.new(0)
    for digit in text:gmatch("%d") do
        value = value * 10 + tonumber(digit)
    end
    return value
end

local NAMED_ESCAPES = { ["\t"] = "\\t", ["\n"] = "\\n", ["\r"] = "\\r" }

local function escape_control(c)
    return NAMED_ESCAPES[c] or string.format("\\x%02x", c:byte())
end

-- Text for columns and tree labels, as textout.safe_text writes it: broken
-- UTF-8 as U+FFFD, control characters (C0, DEL, C1) escaped as \xNN, \n, \t, \r,
-- so a hostile header cannot write terminal escapes or extra lines.
local function display_text(text)
    if not text:find("[^ -~]") then return text end -- printable ASCII (most text) is its own display
    text = utf8_replace(text)
    if not text:find("[%z\1-\31\127\194]") then return text end
    text = text:gsub("[%z\1-\31\127]", escape_control)
    return (text:gsub("\194([\128-\159])", function(c) return string.format("\\x%02x", c:byte()) end))
end

-- A byte no believable header holds, whatever follows it (parser.py _RULED_OUT):
-- a control byte, a newline before other text, a byte never found in UTF-8.
-- s[first..last] (1-based, inclusive) is a header or the start of one.
local function ruled_out(s, first, last)
    local part = s:sub(first, last)
    return part:find("[%z\1-\9\11-\31\127\192\193\245-\255]") ~= nil or part:find("\n[^\n]") ~= nil
end

local function has_control_byte(s, first, last)
    -- any of \0-\31 or \127 in s[first..last] (1-based, inclusive)
    if last < first then return false end
    return s:find("[%z\1-\31\127]", first) ~= nil and s:find("[%z\1-\31\127]", first) <= last
end

----------------------------------------------------------------------------
-- JSON (control and error bodies): a validator and a reader for [id, command, ...]
----------------------------------------------------------------------------

local json_value

local function json_ws(s, i)
    return s:match("^[ \t\n\r]*()", i)
end

local function json_string(s, i)
    -- s:byte(i) == '"'; returns end index (after the closing quote) and the decoded text
    local out, pos = {}, i + 1
    while true do
        local c = s:byte(pos)
        if c == nil or c < 0x20 then return nil end
        if c == 0x22 then return pos + 1, table.concat(out) end
        if c == 0x5C then
            local e = s:sub(pos + 1, pos + 1)
            local simple = ({['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t"})[e]
            if simple then
                out[#out + 1] = simple
                pos = pos + 2
            elseif e == "u" and s:sub(pos + 2, pos + 5):match("^%x%x%x%x$") then
                out[#out + 1] = "\\u" .. s:sub(pos + 2, pos + 5)
                pos = pos + 6
            else
                return nil
            end
        else
            local stop = s:find('["\\%z\1-\31]', pos)
            if stop == nil then return nil end
            out[#out + 1] = s:sub(pos, stop - 1)
            pos = stop
        end
    end
end

local function json_container(s, i, close)
    local pos = json_ws(s, i + 1)
    if s:sub(pos, pos) == close then return pos + 1 end
    while true do
        if close == "}" then
            if s:sub(pos, pos) ~= '"' then return nil end
            pos = json_string(s, pos)
            if pos == nil then return nil end
            pos = json_ws(s, pos)
            if s:sub(pos, pos) ~= ":" then return nil end
            pos = json_ws(s, pos + 1)
        end
        pos = json_value(s, pos)
        if pos == nil then return nil end
        pos = json_ws(s, pos)
        local c = s:sub(pos, pos)
        if c == close then return pos + 1 end
        if c ~= "," then return nil end
        pos = json_ws(s, pos + 1)
    end
end

json_value = function(s, i)
    local c = s:sub(i, i)
    if c == '"' then return (json_string(s, i)) end
    if c == "[" then return json_container(s, i, "]") end
    if c == "{" then return json_container(s, i, "}") end
    for _, literal in ipairs({"true", "false", "null", "NaN", "Infinity", "-Infinity"}) do
        if s:sub(i, i + #literal - 1) == literal then return i + #literal end
    end
    local number_end = s:match("^%-?%d+()", i)
    if number_end == nil or (s:sub(i, i + 1) == "00" or s:sub(i, i + 2) == "-00")
        or s:match("^%-?0%d", i) then
        return nil
    end
    number_end = s:match("^%.%d+()", number_end) or number_end
    number_end = s:match("^[eE][+-]?%d+()", number_end) or number_end
    return number_end
end

-- The whole body as one JSON document: returns the kind of its top value ("array", ...) or nil.
local function json_document(s)
    if not is_utf8(s) then return nil end
    local pos = json_ws(s, 1)
    local first = s:sub(pos, pos)
    local stop = json_value(s, pos)
    if stop == nil or json_ws(s, stop) ~= #s + 1 then return nil end
    if first == "[" then return "array" end
    if first == "{" then return "object" end
    return "scalar"
end

-- [id, command, ...args] of a control body that is a JSON array: id text, command (string or nil), args JSON text.
local function control_parts(s)
    local pos = json_ws(s, 1) + 1
    pos = json_ws(s, pos)
    if s:sub(pos, pos) == "]" then return nil, nil, "[]" end
    local id_end = json_value(s, pos)
    local id_text = s:sub(pos, id_end - 1)
    pos = json_ws(s, id_end)
    if s:sub(pos, pos) == "]" then return id_text, nil, "[]" end
    pos = json_ws(s, pos + 1)
    local second_end, command = pos, nil
    if s:sub(pos, pos) == '"' then
        second_end, command = json_string(s, pos)
    else
        second_end = json_value(s, pos)
    end
    local rest = json_ws(s, second_end)
    local args
    if s:sub(rest, rest) == "]" then
        args = "[]"
    else
        local last = #s
        while s:sub(last, last) ~= "]" do last = last - 1 end
        args = "[" .. strip(s:sub(rest + 1, last - 1)) .. "]"
    end
    return id_text, command, args, s:sub(pos, second_end - 1)
end

----------------------------------------------------------------------------
-- One header (port of mproxy_scapy/header.py ParsedHeader)
----------------------------------------------------------------------------

local SERVICE_CHARS = "^[%w%-_%.%+]+$"

-- h.problems is nil for a header without problems (most of them: no list is made).
local function parse_header(raw)
    local dialect = raw:sub(-1) == "\n" and "go" or "js"
    local body = dialect == "go" and strip(raw) or raw
    -- printable ASCII is valid UTF-8, whatever whitespace the Go dialect trimmed
    local plain = not body:find("[^ -~]")
    local utf8 = plain or is_utf8(raw)
    -- the usual header, seven fields, is split by one pattern; others field by field
    local fields
    local a, b, c, d, e, f, g = body:match("^([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*)$")
    if a then
        fields = { a, b, c, d, e, f, g }
    else
        fields = {}
        local pos = 1
        while true do
            local comma = body:find(",", pos, true)
            if comma == nil then
                fields[#fields + 1] = body:sub(pos)
                break
            end
            fields[#fields + 1] = body:sub(pos, comma - 1)
            pos = comma + 1
        end
    end
    if dialect == "go" and #fields > 1 and fields[#fields] == "" then
        fields[#fields] = nil
    end
    local field_count = #fields
    local values = {}
    for index = 1, #HEADER_KEYS do
        values[HEADER_KEYS[index]] = fields[index]
    end
    local problems
    if not utf8 then
        problems = { { "header_not_utf8", "header bytes are not valid UTF-8" } }
    end
    if field_count < MIN_HEADER_FIELDS then
        problems = problems or {}
        problems[#problems + 1] = { "too_few_fields",
            string.format("%d fields, at least %d expected", field_count, MIN_HEADER_FIELDS) }
    end
    local datalen
    local datalen_text = values.datalen
    if datalen_text ~= nil then
        if is_digits(datalen_text) then
            datalen = tonumber(datalen_text)
        else
            problems = problems or {}
            if datalen_text:match("^%-%d+$") then
                problems[#problems + 1] = { "datalen_negative", "datalen " .. py_repr(datalen_text) }
            else
                problems[#problems + 1] = { "datalen_not_numeric", "datalen " .. py_repr(datalen_text) }
            end
        end
    end
    local service = values.service
    return { raw = raw, utf8 = utf8, plain = plain, dialect = dialect, field_count = field_count, values = values,
             datalen = datalen, problems = problems,
             kind = (service ~= nil and MESSAGE_KINDS[service]) and service or DATA_KIND }
end

-- The strict test used to find the next frame after garbage (ParsedHeader.looks_like_frame_start).
local function looks_like_frame_start(h)
    if h.problems or h.datalen == nil then return false end
    local text = h.raw
    if h.dialect == "go" then text = text:gsub("\n+$", "") end
    if text:find("[%z\1-\31\127]") then return false end
    local v = h.values
    if v.family ~= "" and FAMILIES[v.family] == nil then return false end
    for _, key in ipairs({ "port", "serviceport" }) do
        if v[key] and v[key] ~= "" and not is_digits(v[key]) then return false end
    end
    return v.service ~= nil and v.service:match(SERVICE_CHARS) ~= nil
end

----------------------------------------------------------------------------
-- The frame parser for one direction (port of mproxy_scapy/parser.py FrameParser)
--
-- run(buf) takes every byte not yet consumed (TCP reassembly or our own
-- WebSocket buffer hands them back) and returns the records completed, and
-- how many bytes of buf are consumed. Records hold positions in buf.
----------------------------------------------------------------------------

local NEED_MORE, PROGRESS = 0, 1

local Parser = {}
Parser.__index = Parser

local function new_parser()
    return setmetatable({ base = 0, synced = true, garbage_offset = 0, garbage_len = 0 }, Parser)
end

local function add_problem(record, kind, detail)
    record.problems[#record.problems + 1] = { kind, detail }
end

local function frame_record(pos, base, version, hdrlen, h)
    local record = { pos = pos, offset = base, length = 2 + hdrlen, kind = h.kind, version = version,
                     hdrlen = hdrlen % 256, header = h, datalen = h.datalen, body_len = 0, gap_bytes = 0,
                     problems = {} }
    if version ~= VERSION_1_BYTE then
        add_problem(record, "bad_version", string.format("version byte 0x%02x, v1 is 0xfe", version))
    end
    if h.problems then
        for _, p in ipairs(h.problems) do record.problems[#record.problems + 1] = p end
    end
    return record
end

-- The kinds whose body check_body reads (other bodies are not copied out for it).
local CHECKED_BODIES = { control = true, pause = true, resume = true }

local function check_body(record, body)
    if body == nil then return end
    if record.kind == "control" and json_document(body) ~= "array" then
        add_problem(record, "bad_body", "control body is not a JSON array")
    elseif record.kind == "pause" or record.kind == "resume" then
        local count = body:gsub("^[ \t\n\r\v\f]+", ""):gsub("[ \t\n\r\v\f]+$", "")
        if count ~= "" and not is_digits(count) then
            add_problem(record, "bad_body", record.kind .. " body is not a byte count")
        end
    end
end

function Parser:flush_garbage(out)
    if self.garbage_len == 0 then return end
    local where = self.garbage_offset == 0 and "before the first frame"
        or ("at stream offset " .. string.format("%d", self.garbage_offset))
    local record = { kind = "garbage", offset = self.garbage_offset, length = self.garbage_len, body_len = 0,
                     problems = {} }
    add_problem(record, "garbage_skipped",
        string.format("%d bytes that are not M-PROXY %s", self.garbage_len, where))
    out[#out + 1] = record
    self.garbage_len = 0
end

function Parser:skip(count)
    if count <= 0 then return end
    if self.garbage_len == 0 then self.garbage_offset = self.base end
    self.garbage_len = self.garbage_len + count
    self.base = self.base + count
end

-- The 256 bytes after a cut header can be the rest of a name: host-name
-- characters, at most one more comma (a servicename), Go's ",\n" at the end.
local function name_continuation(text)
    local function plain(part)
        local first, rest = part:match("^([^,]*),(.*)$")
        if first == nil then return part:match("^[%w_.*:%-]*$") ~= nil end
        return first:match("^[%w_.*:%-]*$") ~= nil and rest:match("^[%w_.%-]*$") ~= nil
    end
    if text:sub(-2) == ",\n" and plain(text:sub(1, -3)) then return true end
    return plain(text)
end

-- DNS labels of 1 to 63 name characters, an optional final dot.
local function host_name(name)
    if name == nil or name == "" then return false end
    name = name:gsub("%.$", "")
    for label in (name .. "."):gmatch("([^.]*)%.") do
        if #label < 1 or #label > 63 or not label:match("^[%w_*%-]+$") then return false end
    end
    return true
end

-- A header longer than 255 bytes usually still parses at hdrlen (the name is
-- cut): see parser.py FrameParser._wrapped_alternative. The 256 bytes it
-- looks at lie inside the frame's own body, so it never waits past the frame.
function Parser:wrapped_alternative(buf, pos, h, header_end, final)
    local available = #buf - pos
    local datalen = h.datalen or 0
    if h.field_count < 7 or not h.values.name or h.values.name == "" or buf:byte(pos + 1) ~= VERSION_1_BYTE then
        return nil
    end
    if datalen < WRAP or datalen > MAX_BODY_HELD then return nil end
    local tail_end = header_end + WRAP
    if available < tail_end then
        if final then return nil end
        return NEED_MORE
    end
    if not name_continuation(buf:sub(pos + header_end + 1, pos + tail_end)) then return nil end
    local longer = parse_header(buf:sub(pos + 3, pos + tail_end))
    if longer.datalen ~= h.datalen or not host_name(longer.values.name) then return nil end
    return longer
end

-- The header of the frame at pos: the parsed header and where it ends, or
-- nil and what at_boundary returns (more bytes wanted, or none of a frame).
function Parser:boundary_header(buf, pos, out, final, available, version, hdrlen)
    local header_end = 2 + hdrlen
    local h = parse_header(buf:sub(pos + 3, pos + header_end))
    if h.datalen ~= nil and (version == VERSION_1_BYTE or looks_like_frame_start(h)) then
        local wrapped = self:wrapped_alternative(buf, pos, h, header_end, final)
        if wrapped == NEED_MORE then
            self.need = self.base + header_end + WRAP
            return nil, NEED_MORE
        end
        if wrapped ~= nil then
            h, header_end = wrapped, header_end + WRAP
        end
        return h, header_end
    end
    if version ~= VERSION_1_BYTE then
        self.synced = false
        return nil, PROGRESS, 0
    end
    local settled = ruled_out(buf, pos + 3, math.min(#buf, pos + header_end + WRAP))
    if available < header_end + WRAP and not final and not settled then
        return nil, NEED_MORE -- every new byte may settle it: no parser.need
    end
    local longer = not settled and parse_header(buf:sub(pos + 3, pos + header_end + WRAP))
    if longer and looks_like_frame_start(longer) then
        return longer, header_end + WRAP
    end
    self.synced = false
    if not has_control_byte(buf, pos + 3, pos + header_end) then
        out[#out + 1] = frame_record(pos, self.base, version, hdrlen, h)
        self.base = self.base + header_end
        return nil, PROGRESS, header_end
    end
    return nil, PROGRESS, 0
end

function Parser:at_boundary(buf, pos, out, final)
    local available = #buf - pos
    if available < 2 or available < 2 + buf:byte(pos + 2) then
        if final then return self:short_at_end(buf, pos, out) end
        if available > 2 and buf:byte(pos + 1) ~= VERSION_1_BYTE and ruled_out(buf, pos + 3, #buf) then
            self.synced = false -- after another version byte only a believable header is read
            return PROGRESS, 0
        end
        return NEED_MORE
    end
    local version, hdrlen = buf:byte(pos + 1, pos + 2)
    -- a frame whose body was still coming: its header was read then
    local waiting = self.waiting
    self.waiting = nil
    local h, header_end, used
    if waiting and waiting.base == self.base and available >= waiting.header_end then
        h, header_end = waiting.h, waiting.header_end
    else
        h, header_end, used = self:boundary_header(buf, pos, out, final, available, version, hdrlen)
        if h == nil then return header_end, used end
    end
    local record = frame_record(pos, self.base, version, header_end - 2, h)
    if header_end - 2 > 255 then
        add_problem(record, "hdrlen_wrapped", string.format(
            "hdrlen byte says %d but the header is %d bytes (a packer wrote len & 0xff)", hdrlen, header_end - 2))
    end
    local datalen = h.datalen or 0
    local total = header_end + datalen
    if available < total then
        self.need = self.base + total
        self.waiting = { base = self.base, h = h, header_end = header_end }
        return NEED_MORE
    end
    record.length = total
    record.header_end = header_end
    record.body_len = datalen
    if datalen > 0 and CHECKED_BODIES[record.kind] then
        check_body(record, buf:sub(pos + header_end + 1, pos + total))
    end
    out[#out + 1] = record
    self.base = self.base + total
    return PROGRESS, total
end

-- Index (0-based, from pos) of the next believable frame start; -1 none; -2 - i: maybe at i, header incomplete.
local function find_frame_start(buf, pos, from, final)
    local position = pos + from
    while true do
        local candidate = buf:find("\254", position + 1, true)
        if candidate == nil then return -1 end
        candidate = candidate - 1
        local hdrlen = buf:byte(candidate + 2)
        if hdrlen == nil or #buf < candidate + 2 + hdrlen then
            if not final and not ruled_out(buf, candidate + 3, #buf) then return -2 - (candidate - pos) end
        elseif looks_like_frame_start(parse_header(buf:sub(candidate + 3, candidate + 2 + hdrlen))) then
            return candidate - pos
        end
        position = candidate + 1
    end
end

-- The start of a frame whose end never came: decoded as far as it goes.
function Parser:partial_record(buf, pos, count, out)
    local record
    local hdrlen = buf:byte(pos + 2)
    if count >= 2 and count >= 2 + hdrlen then
        local h = parse_header(buf:sub(pos + 3, pos + 2 + hdrlen))
        record = frame_record(pos, self.base, buf:byte(pos + 1), hdrlen, h)
        record.header_end = 2 + hdrlen
        record.body_len = count - 2 - hdrlen
        record.length = count
        record.truncated = true
    else
        record = { kind = "garbage", pos = pos, offset = self.base, length = count, body_len = 0, problems = {} }
    end
    add_problem(record, "truncated", string.format("%d bytes of an incomplete frame at stream offset %d",
        count, self.base))
    out[#out + 1] = record
    self.base = self.base + count
    return count
end

-- The stream ends inside what should be a frame: keep any believable frame after it.
function Parser:short_at_end(buf, pos, out)
    local start = find_frame_start(buf, pos, 1, true)
    if start < 0 then return NEED_MORE end
    if buf:byte(pos + 1) == VERSION_1_BYTE then
        return PROGRESS, self:partial_record(buf, pos, start, out)
    end
    self:skip(start)
    self:flush_garbage(out)
    return PROGRESS, start
end

function Parser:scan(buf, pos, out, final)
    local start = find_frame_start(buf, pos, 0, final)
    if start == -1 then
        self:skip(#buf - pos)
        return NEED_MORE, #buf - pos
    end
    if start < -1 then
        self:skip(-2 - start)
        return NEED_MORE, -2 - start
    end
    self:skip(start)
    self:flush_garbage(out)
    self.synced = true
    return PROGRESS, start
end

-- A frame whose body passes a capture gap is not held: its body is counted
-- as it streams past (FrameParser._BodyStream).
function Parser:stream_body(buf, pos, out)
    local stream = self.streaming
    local take = math.min(stream.remaining, #buf - pos)
    stream.record.body_len = stream.record.body_len + take
    stream.remaining = stream.remaining - take
    self.base = self.base + take
    if stream.remaining > 0 then return NEED_MORE, take end
    self:finish_stream(out)
    return PROGRESS, take
end

function Parser:finish_stream(out)
    local record = self.streaming.record
    self.streaming = nil
    if record.gap_bytes > 0 then
        add_problem(record, "gap", string.format("%d body bytes lost in the capture", record.gap_bytes))
        self.synced = true
    end
    out[#out + 1] = record
end

-- All records buf completes; returns records and the number of bytes consumed.
-- parser.need is then the stream offset a frame under way needs (nil: unknown).
function Parser:run(buf, final)
    local out, pos = {}, 0
    self.need = nil
    while true do
        local step, used
        if self.streaming then
            step, used = self:stream_body(buf, pos, out)
        elseif pos >= #buf then
            break
        elseif self.synced then
            step, used = self:at_boundary(buf, pos, out, final)
        else
            step, used = self:scan(buf, pos, out, final)
        end
        pos = pos + (used or 0)
        if step == NEED_MORE then break end
    end
    return out, pos
end

-- What is left when the stream ends or breaks: a truncated frame, or garbage.
function Parser:flush_incomplete(buf, pos, out)
    if pos < #buf then
        if self.synced and buf:byte(pos + 1) == VERSION_1_BYTE then
            self:partial_record(buf, pos, #buf - pos, out)
        else
            self:skip(#buf - pos)
        end
    end
    self:flush_garbage(out)
end

-- The stream ended after buf (FrameParser.close).
function Parser:close(buf)
    local out, pos = self:run(buf, true)
    if self.streaming then
        local stream = self.streaming
        self.streaming = nil
        stream.record.length = stream.record.length - stream.remaining
        add_problem(stream.record, "truncated",
            string.format("stream ended %d bytes before the frame's end", stream.remaining))
        out[#out + 1] = stream.record
    end
    self:flush_incomplete(buf, pos, out)
    return out
end

-- nbytes of the stream were lost after buf (FrameParser.gap): a frame whose
-- header is complete keeps its place and its body streams past the hole;
-- anything else ends here and the parser resynchronises after the hole.
function Parser:gap(buf, nbytes)
    local out, pos = {}, 0
    if not self.streaming then
        local records
        records, pos = self:run(buf, true)
        for _, record in ipairs(records) do out[#out + 1] = record end
    end
    local rest = #buf - pos
    if not self.streaming and self.synced and rest >= 2 and rest >= 2 + buf:byte(pos + 2) then
        local hdrlen = buf:byte(pos + 2)
        local h = parse_header(buf:sub(pos + 3, pos + 2 + hdrlen))
        if h.datalen ~= nil and rest - 2 - hdrlen < h.datalen then
            local record = frame_record(nil, self.base, buf:byte(pos + 1), hdrlen, h)
            record.header_end = 2 + hdrlen
            record.length = 2 + hdrlen + h.datalen
            self.base = self.base + 2 + hdrlen
            self.streaming = { record = record, remaining = h.datalen }
            local _, used = self:stream_body(buf, pos + 2 + hdrlen, out)
            pos = pos + 2 + hdrlen + used
        end
    end
    if self.streaming then
        local stream = self.streaming
        local lost = math.min(nbytes, stream.remaining)
        stream.record.gap_bytes = stream.record.gap_bytes + lost
        stream.remaining = stream.remaining - lost
        self.base = self.base + lost
        nbytes = nbytes - lost
        if stream.remaining == 0 then self:finish_stream(out) end
        if nbytes == 0 then return out end
    end
    self:flush_incomplete(buf, pos, out)
    local record = { kind = "gap", offset = self.base, length = nbytes, gap_bytes = nbytes, body_len = 0,
                     problems = {} }
    add_problem(record, "gap", string.format("%d bytes lost in the capture at stream offset %d", nbytes, self.base))
    out[#out + 1] = record
    self.base = self.base + nbytes
    self.synced = false
    return out
end

----------------------------------------------------------------------------
-- State kept across packets (first pass builds it, later passes look it up)
----------------------------------------------------------------------------

local f_tcp_seq_raw = Field.new("tcp.seq_raw")
local f_tcp_len = Field.new("tcp.len")
local f_tcp_flags = Field.new("tcp.flags")
local f_tcp_ack_raw = Field.new("tcp.ack_raw")
local f_tcp_payload = Field.new("tcp.payload")
local TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 1, 2, 4, 16

local function has_flag(flags, bit)
    return flags % (bit + bit) >= bit
end

-- The value of a field's last occurrence in this packet (nil: none).
local last_value
do
    local function last_of(...)
        local count = select("#", ...)
        if count == 0 then return nil end
        return (select(count, ...)).value
    end

    function last_value(extractor)
        local first, second = extractor()
        if second == nil then return first and first.value end
        return last_of(extractor())
    end
end

-- This packet's TCP segment: { seq, len, ack, flags } (raw numbers) and
-- payload(), its bytes. Field extractors give it when Wireshark builds a
-- protocol tree; the first pass of tshark -2 (and of the GUI) builds none
-- when nothing filters, and then the TCP header is read from the frame.
-- The fields are read once a packet: the dissector and the postdissector both ask.
local field_segment
do
    local read = { number = -1 } -- the packet read last and its segment

    local function field_payload()
        local payloads = { f_tcp_payload() }
        return #payloads > 0 and payloads[#payloads].range:bytes():raw() or ""
    end

    -- (number: the packet's number when the caller has read it already)
    function field_segment(pinfo, number)
        number = number or pinfo.number
        if read.number == number then return read.segment end
        local seq = last_value(f_tcp_seq_raw)
        local segment = nil
        if seq ~= nil then
            segment = { seq = seq, len = last_value(f_tcp_len) or 0, ack = last_value(f_tcp_ack_raw),
                        flags = last_value(f_tcp_flags) or 0, payload = field_payload }
        end
        read.number, read.segment = number, segment
        return segment
    end
end

local HEADER_SCAN = 256 -- frame bytes searched for the TCP header (link, VLAN and IP headers come first)

local function uint_at(s, i, size)
    local value = 0
    for index = i, i + size - 1 do value = value * 256 + s:byte(index) end
    return value
end

-- The end (1-based, exclusive, in the frame) of the IP packet whose TCP
-- header starts at s[tcp]: an IPv4 or IPv6 header carrying TCP must end there.
local function ip_end_before(s, tcp)
    for ihl = 5, 15 do
        local ip = tcp - 4 * ihl
        if ip < 1 then break end
        if s:byte(ip) == 0x40 + ihl and s:byte(ip + 9) == 6 and uint_at(s, ip + 6, 2) % 8192 == 0 then
            local total = uint_at(s, ip + 2, 2)
            return total > 0 and ip + total or nil
        end
    end
    local ip = tcp - 40
    if ip >= 1 and math.floor(s:byte(ip) / 16) == 6 and s:byte(ip + 6) == 6 then
        return ip + 40 + uint_at(s, ip + 4, 2)
    end
    return nil
end

local function frame_segment(frame, pinfo)
    local n = frame:len()
    local s = frame:raw(0, math.min(n, HEADER_SCAN))
    local sport, dport = pinfo.src_port, pinfo.dst_port
    local ports = string.char(math.floor(sport / 256), sport % 256, math.floor(dport / 256), dport % 256)
    local from = 1
    while true do
        local tcp = s:find(ports, from, true)
        if tcp == nil or tcp + 19 > #s then return nil end
        local header_len = math.floor(s:byte(tcp + 12) / 16) * 4
        local ip_end = header_len >= 20 and ip_end_before(s, tcp)
        if ip_end then
            local first = tcp - 1 + header_len -- 0-based frame offset of the payload
            local length = math.max(ip_end - 1 - first, 0)
            local captured = math.max(math.min(length, n - first), 0)
            return { seq = uint_at(s, tcp + 4, 4), len = length, ack = uint_at(s, tcp + 8, 4),
                     flags = s:byte(tcp + 13), first = first, captured = captured,
                     payload = function() return captured > 0 and frame:raw(first, captured) or "" end }
        end
        from = tcp + 1
    end
end

local tunnels = {}        -- connection -> { carrier = "tcp"|"websocket", directions = {key -> peer key} }
local parsers = {}        -- stream:direction key -> Parser
local results = {}        -- frame number -> { { record, bytes, ctx, header_in } } shown there
local continuations = {}  -- frame number -> true: WebSocket bytes of a frame completed later
local ws_pending = {}     -- stream:direction key -> { frames = { {number, at} } }: packets of the held bytes
local reassembled_in = {} -- frame number -> frame number completing a frame started there
local controls = {}       -- stream:direction:id -> request { frame, time }
local control_links = {}  -- frame number .. ":" .. record offset -> { reply_to, replied_in, reply_time }
local relay_keys = {}     -- connection -> direction key of the side that sends connection frames (the relay)
local ws_dirs = {}        -- direction key -> our WebSocket unframer's state
local ws_verdicts = {}    -- connection -> whether the WebSocket connection http upgraded carries M-PROXY
local ws_heads = {}       -- frame number -> { offset, length } of the HTTP upgrade head shown there
local ws_notes = {}       -- frame number -> { { carrier problem kind, detail } } found in its WebSocket framing
local tvb_places = {}     -- frame number -> { start, length, consumed_end }: stream offsets of its raw-TCP tvb
local clients = {}        -- connection -> endpoint key of the SYN sender (else the first sender)
local first_pass = { done = false } -- set once a later pass has begun

-- The first pass keeps every record for later passes, so the Lua heap grows
-- with the capture while each packet makes short-lived garbage. Lua 5.4's
-- generational collector (Wireshark 4.2 and later) leaves the kept records
-- alone in its minor collections; the incremental one walks them all again
-- and again (on a 100 MB capture a quarter of tshark's time under 4.4). Lua
-- 5.2's generational mode was experimental and is slower here: it is left as is.
if _VERSION >= "Lua 5.4" then collectgarbage("generational") end

-- A table keyed by frame number, kept in pages of 1024 frames. One table
-- that gains a key every packet is walked whole by each collection that
-- finds it changed (each minor one, in generational mode): a page is small.
local function frame_table()
    local pages = {}
    return setmetatable({}, {
        __index = function(_, number)
            local page = pages[math.floor(number / 1024)]
            return page and page[number]
        end,
        __newindex = function(_, number, value)
            local index = math.floor(number / 1024)
            local page = pages[index]
            if page == nil then
                page = {}
                pages[index] = page
            end
            page[number] = value
        end,
    })
end

local function init_state()
    tunnels, parsers, results, continuations, ws_pending = {}, {}, frame_table(), frame_table(), {}
    reassembled_in, controls, control_links = frame_table(), {}, {}
    clients, ws_dirs, ws_heads, ws_verdicts, relay_keys = {}, {}, frame_table(), {}, {}
    ws_notes, tvb_places = frame_table(), frame_table()
    first_pass = { done = false }
end

function mproxy.init()
    init_state()
end

-- A TCP connection, named by its two endpoints (the same in every pass; field
-- extractors such as tcp.stream are empty when tshark builds no tree).
-- The names of a direction are made once ({ stream, key, peer }, also the
-- context its records keep), and found once per packet (the dissector and the
-- postdissector both need them).
local name_packet
do
    local direction_names = {} -- "src|port dst|port" -> the names of that direction
    local named = { number = -1 } -- the packet named last, and its direction's names

    function name_packet(pinfo, number)
        local src_port, dst_port = pinfo.src_port, pinfo.dst_port
        number = number or pinfo.number
        local names = named.names
        if named.number == number and names.src_port == src_port and names.dst_port == dst_port then return names end
        local a = string.format("%s|%d", tostring(pinfo.src), src_port)
        local b = string.format("%s|%d", tostring(pinfo.dst), dst_port)
        local pair = a .. " " .. b
        names = direction_names[pair]
        if names == nil then
            local stream = a < b and a .. "|" .. b or b .. "|" .. a
            names = { src_port = src_port, dst_port = dst_port, stream = stream,
                      key = stream .. ">" .. a, peer = stream .. ">" .. b }
            direction_names[pair] = names
        end
        named.number, named.names = number, names
        return names
    end
end

local function stream_id(pinfo)
    return name_packet(pinfo).stream
end

local function endpoint_key(pinfo)
    return name_packet(pinfo).key
end

-- the other direction of the same tunnel: where replies to this direction's requests come from
local function peer_key(pinfo)
    return name_packet(pinfo).peer
end

-- { key, peer, stream } of the packet's direction (never changed: records keep it)
local function context(pinfo)
    return name_packet(pinfo)
end

local function new_tunnel(stream, carrier)
    local count = 0
    for _ in pairs(tunnels) do count = count + 1 end
    tunnels[stream] = { carrier = carrier, order = count + 1, directions = {}, stream = stream }
end


----------------------------------------------------------------------------
-- Showing one record
----------------------------------------------------------------------------

local function describe(tbl, value)
    if value == nil then return nil end
    return tbl[value]
end

-- (made once per record shown: the tree and the summary line both ask)
local function client_id(record)
    local made = record.client_id
    if made ~= nil then return made or nil end
    if record.header == nil or record.kind == "control" then
        record.client_id = false
        return nil
    end
    local v = record.header.values
    local port = v.port
    if not is_digits(port) then port = "" else port = string.format("%d", tonumber(port)) end
    made = (v.family or "") .. "," .. (v.address or "") .. "," .. port
    record.client_id = made
    return made
end

local function summary(record, control)
    if record.header == nil then
        return string.format("%s %d bytes", record.kind, record.length)
    end
    local v = record.header.values
    local parts = { record.kind }
    if record.kind == "control" then
        if control and control.id then
            local id = tonumber(control.id)
            if id and id < 0 then
                parts[#parts + 1] = "reply #" .. control.id
            elseif control.command then
                parts[#parts + 1] = "#" .. control.id .. " " .. control.command
            else
                parts[#parts + 1] = "#" .. control.id
            end
        end
    elseif record.kind == "connection" then
        parts[#parts + 1] = client_id(record)
        parts[#parts + 1] = v.servicename ~= "" and v.servicename or v.service
        parts[#parts + 1] = v.name
    elseif record.kind == DATA_KIND then
        parts[#parts + 1] = string.format("%d bytes", record.body_len)
        parts[#parts + 1] = client_id(record)
        parts[#parts + 1] = v.service
        parts[#parts + 1] = v.name
    else
        parts[#parts + 1] = client_id(record)
    end
    local text = {}
    for _, part in ipairs(parts) do
        if part and part ~= "" then text[#text + 1] = part end
    end
    local line = display_text(table.concat(text, " "))
    if #record.problems > 0 then line = line .. " [" .. record.problems[1][1] .. "]" end
    return line
end

local function add_number(tree, field, range, text)
    local number = is_digits(text) and tonumber(text) or nil
    if number ~= nil and number <= 65535 then
        return tree:add(field, range, number)
    end
    return nil
end

local function add_control(tree, pinfo, record, body_range, body, ctx)
    if json_document(body) ~= "array" then return nil end
    local id_text, command, args, second = control_parts(body)
    local control = { id = id_text, command = command }
    local ctree = tree:add(mproxy, body_range, "Control")
    ctree:set_text("Control: " .. display_text(body:sub(1, 120)))
    local id = tonumber(id_text or "")
    if id_text and id and id == math.floor(id) and math.abs(id) < 2^31 then
        ctree:add(pf.control_id, body_range, id)
    end
    if command ~= nil and (id == nil or id > 0) then
        local item = ctree:add(pf.control_command, body_range, command)
        if CONTROL_COMMANDS[command] then item:append_text(" (" .. CONTROL_COMMANDS[command] .. ")") end
    end
    local secret = command ~= nil and SECRET_COMMANDS[command] and not mproxy.prefs.show_tokens
    if id ~= nil and id < 0 then
        -- a reply carries the result in the second element
        args = "[" .. (second or "") .. (args ~= "[]" and ", " .. args:sub(2, -2) or "") .. "]"
        if second == nil then args = "[]" end
    end
    ctree:add(pf.control_args, body_range, secret and REDACTED or args)
    -- request / reply matching, per tunnel: a reply -N travels the other way from request N
    local link_key = pinfo.number .. ":" .. record.offset .. ":" .. ctx.key
    if not pinfo.visited and id ~= nil and id ~= 0 then
        if id > 0 then
            controls[ctx.key .. "|" .. string.format("%d", id)] =
                { frame = pinfo.number, time = pinfo.abs_ts, link = link_key }
        else
            local request = controls[ctx.peer .. "|" .. string.format("%d", -id)]
            if request then
                control_links[link_key] = { reply_to = request.frame, reply_time = pinfo.abs_ts - request.time }
                control_links[request.link] = { replied_in = pinfo.number }
            end
        end
    end
    local link = control_links[link_key]
    if link then
        if link.reply_to then
            ctree:add(pf.control_reply_to, body_range, link.reply_to):set_generated()
            ctree:add(pf.control_reply_time, body_range, NSTime.new(math.floor(link.reply_time),
                math.floor((link.reply_time % 1) * 1e9 + 0.5))):set_generated()
        end
        if link.replied_in then
            ctree:add(pf.control_replied_in, body_range, link.replied_in):set_generated()
        end
    end
    return control
end

-- A tunneled client's bytes must not reach tls or http as the tunnel's own
-- connection (for wss that would clobber the outer TLS and HTTP state): the
-- body is dissected with the ports of the tunneled connection, client port
-- and relay service port, so Wireshark keeps it in a conversation of its own.
local function call_subdissector(body, pinfo, tree)
    local dissector = body.dissector
    if not dissector then return end
    local src_port, dst_port = pinfo.src_port, pinfo.dst_port
    if body.client_port then
        if body.toward_service then
            pinfo.src_port, pinfo.dst_port = body.client_port, body.service_port
        else
            pinfo.src_port, pinfo.dst_port = body.service_port, body.client_port
        end
    end
    pcall(dissector.call, dissector, body.tvb, pinfo, tree)
    pinfo.src_port, pinfo.dst_port = src_port, dst_port
end

-- "ip:port" ("[ip]:port" for IPv6) of a direction key, as the decoder writes endpoints.
local endpoint_texts = {}

local function endpoint_text(key)
    if key == nil then return nil end
    local text = endpoint_texts[key]
    if text then return text end
    local address, port = key:match(">(.*)|(%d+)$")
    if address == nil then return nil end
    if address:find(":", 1, true) then address = "[" .. address .. "]" end
    text = address .. ":" .. port
    endpoint_texts[key] = text
    return text
end

local show_header, show_body
do
    local DIALECT_SUFFIX = {}
    for dialect, text in pairs(DIALECTS) do DIALECT_SUFFIX[dialect] = " (" .. text .. ")" end
    local LEADING_WS = "^" .. ASCII_WS .. "+"

    -- The header fields, each with its bytes in the header text (pos: where the
    -- record starts in tvb). A record whose bytes are not at hand (a frame whose
    -- body passed a capture gap) shows the same fields without byte ranges
    -- (empty: the empty range they all get then).
    function show_header(item, record, tvb, pos, empty, range, full)
        local h = record.header
        local header_end = record.header_end or record.length
        local hlen = header_end - 2
        if hlen < 0 then hlen = 0 end
        local header_range = empty or (full and tvb(pos + 2, hlen)) or range
        if full then
            item:add(pf.version, empty or tvb(pos, 1), record.version)
            item:add(pf.hdrlen, empty or tvb(pos + 1, 1), record.hdrlen)
        else
            item:add(pf.version, header_range, record.version)
            item:add(pf.hdrlen, header_range, record.hdrlen)
        end
        local htree = full and item:add(mproxy, header_range, "Header: " .. display_text(h.raw))
            or item:add(mproxy, header_range)
        -- plain printable text is its own value; other bytes are read as UTF-8 by Wireshark, from their range
        local plain = h.plain
        local exact_ranges = full or not plain
        -- the Go dialect's header is trimmed before it is split
        local cursor = h.dialect == "go" and #h.raw - #h.raw:gsub(LEADING_WS, "") or 0
        local values = h.values
        for index = 1, #HEADER_KEYS do
            local key = HEADER_KEYS[index]
            local value = values[key]
            if value == nil then break end
            local field_range = header_range
            if exact_ranges and not empty then
                local length = hlen - cursor
                if length < 0 then length = 0 end
                if #value < length then length = #value end
                field_range = tvb(pos + 2 + (cursor < hlen and cursor or hlen), length)
            end
            local field_item
            if key == "port" or key == "serviceport" then
                field_item = add_number(htree, pf[key], field_range, value)
                if field_item == nil and full then
                    htree:add(mproxy, field_range, LABELS[key] .. ": " .. (value == "" and "(empty)" or display_text(value)))
                end
            elseif key == "datalen" then
                local datalen = h.datalen
                if datalen ~= nil then
                    field_item = htree:add(pf.datalen, field_range,
                        datalen < 2^53 and UInt64.new(datalen) or uint64_from_decimal(value))
                elseif full then
                    htree:add(mproxy, field_range, LABELS.datalen .. ": " .. display_text(value))
                end
            elseif plain then
                field_item = htree:add(pf[key], field_range, value)
            elseif not empty then
                field_item = htree:add_packet_field(pf[key], field_range, ENC_UTF_8)
            else
                field_item = htree:add(pf[key], field_range, utf8_replace(value))
            end
            if full and field_item then
                local desc
                if key == "family" then
                    desc = describe(FAMILIES, value)
                elseif key == "service" or key == "servicename" then
                    desc = describe(KINDS, value) or describe(KNOWN_SERVICES, value)
                end
                if desc then field_item:append_text(" (" .. desc .. ")") end
            end
            cursor = cursor + #value + 1
        end
        local dialect_item = item:add(pf.dialect, header_range, h.dialect)
        if full then dialect_item:append_text(DIALECT_SUFFIX[h.dialect]) end
        local cid = client_id(record)
        if cid then
            local cid_item = item:add(pf.client_id, header_range, plain and cid or utf8_replace(cid))
            if full then cid_item:set_generated() end
        end
    end

    local subdissectors = {} -- dissector name -> Dissector (false: none)

    -- The body: raw bytes, control id/command/args, and the service's own dissector.
    function show_body(item, record, tvb, pos, empty, pinfo, ctx, bodies)
        local h = record.header
        local header_end = record.header_end or record.length
        if pos == nil or record.truncated then
            local what = pos == nil and "Body not held (bytes lost in the capture)" or "Partial body"
            item:add(mproxy, empty or tvb(pos + header_end, record.body_len),
                string.format("%s: %d of %s bytes", what, record.body_len, h.values.datalen or "?"))
            return nil
        end
        if record.body_len == 0 then return nil end
        local body_range = tvb(pos + header_end, record.body_len)
        item:add(pf.body, body_range)
        local control
        local kind = record.kind
        if kind == "control" then
            control = add_control(item, pinfo, record, body_range, body_range:raw(), ctx)
        elseif kind == "error" then
            local code = body_range:raw():match('"code"%s*:%s*"([^"]*)"')
            if code and ERROR_CODES[code] then item:append_text(", " .. code .. " (" .. ERROR_CODES[code] .. ")") end
        end
        local values = h.values
        local sub = BODY_SUBDISSECTORS[values.service or ""]
        if sub and mproxy.prefs.subdissectors then
            local dissector = subdissectors[sub]
            if dissector == nil then
                dissector = Dissector.get(sub) or false
                subdissectors[sub] = dissector
            end
            local entry = { dissector = dissector, json = sub == "json", tvb = body_range:tvb() }
            local client_port = tonumber(is_digits(values.port) and values.port or "")
            if client_port and client_port <= 65535 and sub ~= "json" then
                local service_port = tonumber(is_digits(values.serviceport) and values.serviceport or "")
                entry.client_port = client_port
                entry.service_port = (service_port and service_port <= 65535) and service_port or 0
                local relay = relay_keys[ctx.stream]
                entry.toward_service = relay == ctx.key or (relay == nil and clients[ctx.stream] ~= ctx.key)
            end
            bodies[#bodies + 1] = entry
        end
        return control
    end

end

-- Add one record to the tree. tvb holds the record's bytes from position pos
-- (nil: the record's bytes are not at hand, only its fields are shown).
-- header_in: the packet where its header came (WebSocket), when not this one.
-- Returns its summary line (nil when no tree label or column wants one).
local show_record
do
    -- A field the record's bytes do not hold as such: marked generated where the
    -- tree is seen, and plain otherwise (the mark is a call per field for no reader).
    local function add_derived(item, field, range, value, full)
        local added = item:add(field, range, value)
        if full then added:set_generated() end
    end

    function show_record(record, pos, tvb, pinfo, tree, ctx, header_in, bodies, view)
        local full = view.full
        local empty = pos == nil and tvb(0, 0) or nil
        local range = empty or tvb(pos, record.length)
        local item = tree:add(mproxy, range)
        local kind, header = record.kind, record.header
        local src, dst = endpoint_text(ctx.key), endpoint_text(ctx.peer)
        add_derived(item, pf.kind, range, kind, full)
        add_derived(item, pf.offset, range, UInt64.new(record.offset), full)
        add_derived(item, pf.length, range, record.length, full)
        if src then add_derived(item, pf.src, range, src, full) end
        if dst then add_derived(item, pf.dst, range, dst, full) end
        if header ~= nil then add_derived(item, pf.body_len, range, record.body_len, full) end
        if header_in then add_derived(item, pf.header_in, range, header_in, full) end
        if kind == "connection" and ctx.stream then relay_keys[ctx.stream] = ctx.key end
        local control
        if header ~= nil then
            show_header(item, record, tvb, pos, empty, range, full)
            control = show_body(item, record, tvb, pos, empty, pinfo, ctx, bodies)
        end
        local problems = record.problems
        for index = 1, #problems do
            item:add_proto_expert_info(ex[problems[index][1]], problems[index][2])
        end
        if not view.summary then return nil end
        local line = summary(record, control)
        if full then item:append_text(", " .. line) end
        return line
    end
end

local function set_columns(pinfo, lines)
    if #lines == 0 then return end
    pinfo.cols.protocol = "M-PROXY"
    pinfo.cols.info = table.concat(lines, "; ")
end

-- Bodies go to their service's dissector after our Info text is set, so theirs
-- is appended (TLS "Client Hello"); JSON only names itself, so ours is kept.
-- (lines is empty when no column is shown: the columns are left alone then.)
local function dissect_bodies(bodies, pinfo, tree, lines)
    if #bodies == 0 then return end
    local columns = #lines > 0
    if columns then
        pinfo.cols.info:append(" | ")
        pinfo.cols.info:fence()
    end
    local only_json = true
    for _, body in ipairs(bodies) do
        call_subdissector(body, pinfo, tree)
        only_json = only_json and body.json
    end
    if only_json and columns then
        pinfo.cols.info:clear_fence()
        pinfo.cols.protocol = "M-PROXY"
        pinfo.cols.info = table.concat(lines, "; ")
    end
end

----------------------------------------------------------------------------
-- Raw TCP: the desegment loop
----------------------------------------------------------------------------

-- Stream offset of the tvb's first byte. Wireshark's TCP reassembly can hand
-- back bytes we already consumed (a reassembled PDU is extended from its
-- start), so the parser places each tvb in the stream by TCP sequence
-- number: every tvb it gets ends where the current segment ends.
local function tvb_stream_offset(tvb_len, parser, segment)
    local seq_end = (segment.seq + segment.len) % 4294967296
    local start = (seq_end - tvb_len) % 4294967296
    if parser.origin == nil then parser.origin = (start - parser.base) % 4294967296 end
    return (start - parser.origin) % 4294967296
end

-- The last packet that carried bytes of a direction's stream: records the
-- end of the capture completes are shown there (as the Python decoder does).
local function note_arrival(parser, number)
    parser.last_packet = number
end

-- Keep what a record needs to be shown again: later passes (tshark -2, the
-- GUI) do not see the same tvbs, so they show records from these copies.
--
-- A record belongs to the packet that completed it, the packet being
-- dissected when the parser decides it (as in the Python decoder): one pass
-- of tshark shows it there, later passes show it there again. number is
-- given only for records the end of the capture completes.
--
-- window: where buf lies in the packet's tvb ({ skip = tvb position of buf's
-- first byte, length = tvb length }), for records the raw-TCP dissector shows
-- from that tvb: on later passes Wireshark's reassembly hands the same tvb
-- again, so those records keep no copy of their bytes (entry.in_tvb). The
-- copies are ByteArrays: their bytes (all of a WebSocket tunnel's payload)
-- are not Lua strings that Lua's collector counts as its growing heap (Lua
-- 5.4's generational collector then ran one full collection after another).
local function remember(pinfo, record, buf, ctx, header_in, window, number)
    number = number or pinfo.number
    local entry = { record = record, ctx = ctx, header_in = header_in }
    if window then
        entry.from_dissector = true
        if record.pos ~= nil and record.pos + window.skip >= 0
            and record.pos + window.skip + record.length <= window.length then
            entry.in_tvb = true
        end
    end
    if record.pos ~= nil and not entry.in_tvb then
        entry.bytes = ByteArray.new(buf:sub(record.pos + 1, record.pos + record.length), true)
    end
    local shown_there = results[number]
    if shown_there == nil then
        shown_there = {}
        results[number] = shown_there
    end
    shown_there[#shown_there + 1] = entry
    return entry
end

local show_entries, show_tvb_entries
do
    -- How much of a record this dissection shows. A tree that is not visible
    -- (tshark -T fields or a filter on 4.2+, a first pass) keeps only the fields
    -- a filter or -e names, so labels, generated marks and byte ranges per header
    -- field are left out there; a summary line is made only for a tree label or
    -- the Info column. tshark -T fields asks for no columns (4.0 builds a
    -- visible tree for it all the same): no column is written then.
    local function new_view(pinfo, tree)
        local full = tree.visible
        local columns = tostring(pinfo.cols.protocol) ~= "(protocol)"
        return { full = full, summary = full or columns, columns = columns }
    end

    -- What later passes need of a record the first pass showed, in a list (a
    -- record itself has no list part). Its header is parsed again when it is
    -- shown again: the small tables of a parsed header are not kept for every
    -- record of the capture (Lua's collector walks every kept table over and
    -- over, which grew with the capture).
    local SETTLED = { "offset", "length", "kind", "version", "hdrlen", "header_end", "body_len", "truncated" }
    local RAW, PROBLEMS = #SETTLED + 1, #SETTLED + 2

    local function settle(entry)
        local record = entry.record
        if record[1] ~= nil then return end
        local kept = {}
        for index = 1, #SETTLED do kept[index] = record[SETTLED[index]] end
        kept[RAW] = record.header and record.header.raw
        kept[PROBLEMS] = #record.problems > 0 and record.problems or nil
        entry.record = kept
    end

    -- A settled record as the first pass had it.
    local function unsettle(record)
        if record[1] == nil then return record end
        local copy = { problems = record[PROBLEMS] or {} }
        for index = 1, #SETTLED do copy[SETTLED[index]] = record[index] end
        if record[RAW] then copy.header = parse_header(record[RAW]) end
        return copy
    end

    -- One entry's record (pos: where its bytes are in tvb; nil: not at hand, its fields only).
    local function show_entry(entry, record, pos, tvb, pinfo, tree, bodies, view)
        local line = show_record(record, pos, tvb, pinfo, tree, entry.ctx, entry.header_in, bodies, view)
        if not pinfo.visited then settle(entry) end
        return line
    end

    function show_entries(entries, pinfo, tree, fallback_tvb)
        local lines, bodies = {}, {}
        local view = new_view(pinfo, tree)
        for _, entry in ipairs(entries) do
            local record_tvb, pos = fallback_tvb, nil
            if entry.bytes ~= nil then
                record_tvb, pos = entry.bytes:tvb("M-PROXY frame"), 0
            end
            local line = show_entry(entry, unsettle(entry.record), pos, record_tvb, pinfo, tree, bodies, view)
            if view.columns then lines[#lines + 1] = line end
        end
        return lines, bodies
    end

    -- The entries the raw-TCP dissector shows in this packet, in the order the
    -- first pass made them: those in the tvb from its bytes (tvb_start: the
    -- stream offset of its first byte), the others from their copies. The
    -- first pass parsed them from this very tvb; a later pass checks that the
    -- tvb it got holds them.
    function show_tvb_entries(entries, tvb, tvb_start, pinfo, tree)
        if #entries == 0 then return end
        local lines, bodies = {}, {}
        local view = new_view(pinfo, tree)
        local later = pinfo.visited
        for _, entry in ipairs(entries) do
            if entry.in_tvb then
                local record = unsettle(entry.record)
                local pos = record.offset - tvb_start
                if not (pos >= 0 and pos + record.length <= tvb:len()
                    and (not later or record.version == nil or record.length == 0
                         or tvb(pos, 1):uint() == record.version)) then
                    pos = nil
                end
                local line = show_entry(entry, record, pos, tvb, pinfo, tree, bodies, view)
                if view.columns then lines[#lines + 1] = line end
            else
                local more_lines, more_bodies = show_entries({ entry }, pinfo, tree, tvb)
                lines[#lines + 1] = more_lines[1]
                for _, body in ipairs(more_bodies) do bodies[#bodies + 1] = body end
            end
        end
        set_columns(pinfo, lines)
        dissect_bodies(bodies, pinfo, tree, lines)
    end
end

-- Segments that arrive ahead of a hole (reordered, or after a lost segment)
-- wait here, as in the Python decoder's TCP reassembler, until the hole is
-- filled or given up (the peer acknowledges past it, or the tunnel ends).
local function stash_piece(parser, start, data)
    parser.stash = parser.stash or {}
    local held = 0
    for _, piece in ipairs(parser.stash) do
        if piece.start == start then return held end
        held = held + #piece.data
    end
    table.insert(parser.stash, { start = start, data = data })
    table.sort(parser.stash, function(a, b) return a.start < b.start end)
    return held + #data
end

-- Stashed pieces that continue buf (ending at stream offset buf_end), appended.
local function drain_stash(parser, buf, buf_end, number)
    local drained = false
    while parser.stash and parser.stash[1] and parser.stash[1].start <= buf_end do
        local piece = table.remove(parser.stash, 1)
        local piece_end = piece.start + #piece.data
        if piece_end > buf_end then
            buf = buf .. piece.data:sub(buf_end - piece.start + 1)
            buf_end = piece_end
            note_arrival(parser, number)
        end
        drained = true
    end
    return buf, drained
end

-- The direction's bytes not yet in a record (from parser.base on). While a
-- long frame arrives segment by segment only the new bytes are appended, as
-- parts, and joined when someone needs them.
local function held(parser)
    if parser.held_parts then
        parser.pending = (parser.pending or "") .. table.concat(parser.held_parts)
        parser.held_parts, parser.held_extra = nil, nil
    end
    return parser.pending or ""
end

local function held_length(parser)
    return #(parser.pending or "") + (parser.held_extra or 0)
end

local function hold(parser, bytes)
    parser.held_parts = parser.held_parts or {}
    parser.held_parts[#parser.held_parts + 1] = bytes
    parser.held_extra = (parser.held_extra or 0) + #bytes
end

-- Parse buf (the direction's bytes from parser.base on); every record is kept
-- for later passes. Returns the kept entries and the bytes consumed.
local function parse_kept(parser, buf, pinfo, ctx, window, number)
    local records, consumed = parser:run(buf)
    parser.pending = buf:sub(consumed + 1)
    parser.held_parts, parser.held_extra = nil, nil
    local entries = {}
    for _, record in ipairs(records) do
        entries[#entries + 1] = remember(pinfo, record, buf, ctx, nil, window, number)
    end
    return entries, consumed
end

-- Give the direction's holes up to stream offset target: lost bytes become a
-- gap (FrameParser.gap), then the pieces after them are parsed. Our parser
-- holds the bytes from then on (parser.own), not Wireshark's reassembly.
-- A hole with nothing captured behind it yet ends at target.
local function give_up_holes(parser, target, pinfo, ctx, number)
    local entries = {}
    number = number or pinfo.number
    while true do
        local held_bytes = held(parser)
        local expected = parser.base + #held_bytes
        local piece = parser.stash and parser.stash[1]
        local hole_end = piece and math.min(piece.start, target) or target
        if hole_end <= expected then break end
        note_arrival(parser, number)
        for _, record in ipairs(parser:gap(held_bytes, hole_end - expected)) do
            entries[#entries + 1] = remember(pinfo, record, held_bytes, ctx, nil, nil, number)
        end
        parser.pending = ""
        local buf = drain_stash(parser, "", parser.base, number)
        for _, entry in ipairs(parse_kept(parser, buf, pinfo, ctx, nil, number)) do entries[#entries + 1] = entry end
        parser.own = parser.deferred or #parser.pending > 0
    end
    return entries
end

-- Later passes: the records this packet's tvb completed on the first pass.
local tvb_shown = { number = -1 }

-- On later passes TCP hands the same reassembled bytes, cut where the first
-- pass stopped consuming when it asked for more (tvb_places holds both ends).
local function redissect_tcp(tvb, pinfo, tree)
    local names = name_packet(pinfo)
    local place = tvb_places[pinfo.number]
    if place == nil then return end
    local tvb_start = place.start
    if tvb:len() ~= place.length then tvb_start = place.consumed_end - tvb:len() end
    local mine = {}
    for _, entry in ipairs(results[pinfo.number] or {}) do
        if entry.from_dissector and (entry.ctx.key == names.key or entry.acked) then mine[#mine + 1] = entry end
    end
    if #mine == 0 then return end
    tvb_shown = { number = pinfo.number }
    show_tvb_entries(mine, tvb, tvb_start, pinfo, tree)
end

-- Packets whose raw-TCP or WebSocket bytes wait for the postdissector: on
-- a first pass without a protocol tree only it can read their TCP header.
local deferred = { number = -1 }

-- The stream offset up to which segment acknowledges the other direction
-- (state: its parser, or its WebSocket direction; expected: where its next
-- byte belongs), when that passes bytes not seen yet; else nil. The peer
-- acknowledges bytes the capture lacks: they will never come, also when
-- nothing was captured behind them yet (the Python reassembler declares them
-- lost at that acknowledgement too).
local function acked_past(state, segment, expected)
    if not has_flag(segment.flags, TCP_ACK) then return nil end
    local target = (segment.ack - state.origin) % 4294967296
    if state.fin_off and target > state.fin_off then target = state.fin_off end -- the FIN's own number is no byte
    if target <= expected or target > expected + MAX_AHEAD then return nil end
    return target
end

-- The other raw-TCP direction's bytes this segment shows lost, given up.
-- names: the packet's direction (name_packet), passed on: reading pinfo costs.
local function note_tcp_ack(pinfo, names, segment)
    local key = names.peer
    local parser = parsers[key]
    if parser == nil or parser.origin == nil then return nil end
    local target = acked_past(parser, segment, parser.base + held_length(parser))
    if target == nil then return nil end
    return give_up_holes(parser, target, pinfo, { key = key, peer = names.key, stream = names.stream })
end

-- entries with more appended (either may be nil; most packets have none).
local function append_entries(entries, more)
    if more == nil or #more == 0 then return entries end
    if entries == nil then return more end
    for index = 1, #more do entries[#entries + 1] = more[index] end
    return entries
end

-- This packet's bytes of a raw-TCP direction: the stream offset of the
-- tvb's first byte, and the records they complete, appended to entries
-- (nil: none yet; a list is made only when there is something to keep).
local function take_tcp_bytes(tvb, pinfo, ctx, tunnel, segment, entries)
    local key = ctx.key
    local parser = parsers[key]
    if parser == nil then
        parser = new_parser()
        parsers[key] = parser
    end
    if tunnel then tunnel.directions[key] = ctx.peer end
    local number, tvb_len = pinfo.number, tvb:len()
    parser.last_frame = number
    if segment.first then parser.deferred, parser.own = true, true end
    local start = tvb_stream_offset(tvb_len, parser, segment)
    -- where the next new byte belongs: after what we or Wireshark's reassembly hold
    local expected = parser.own and parser.base + held_length(parser) or parser.base
    if start > expected then
        if tunnel then tunnel.stashed = true end
        if stash_piece(parser, start, tvb:raw(0, tvb_len)) > MAX_STASHED then
            -- as the decoder's buffer limit: the oldest hole is lost
            entries = append_entries(entries, give_up_holes(parser, parser.stash[1].start, pinfo, ctx))
        end
        return start, entries
    end
    local skip = expected - start
    if skip >= tvb_len then return start, entries end
    local tvb_end = start + tvb_len
    note_arrival(parser, number)
    if parser.need and tvb_end < parser.need and not (parser.stash and parser.stash[1]) then
        -- the frame under way is still incomplete: keep the new bytes, parse nothing
        local held_end = parser.base + held_length(parser)
        if tvb_end > held_end then hold(parser, tvb:raw(held_end - start, tvb_end - held_end)) end
        if not parser.own then
            pinfo.desegment_offset = skip
            pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
        end
        return start, entries
    end
    local buf = tvb:raw(skip, tvb_len - skip)
    local tvb_skip = skip
    if parser.own then
        local before = held(parser)
        buf = before .. buf
        tvb_skip = skip - #before
    end
    local drained
    buf, drained = drain_stash(parser, buf, start + tvb_len, number)
    local kept, consumed = parse_kept(parser, buf, pinfo, ctx, { skip = tvb_skip, length = tvb_len })
    if #kept > 0 and tvb_places[number] == nil then
        tvb_places[number] = { start = start, length = tvb_len, consumed_end = start + tvb_skip + consumed }
    end
    entries = append_entries(entries, kept)
    if parser.own or drained then
        -- the unconsumed bytes are ours to hold: Wireshark's reassembly cannot know the stashed ones
        parser.own = parser.deferred or consumed < #buf
    elseif skip + consumed < tvb_len then
        pinfo.desegment_offset = skip + consumed
        pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
    end
    return start, entries
end

-- segment: this packet's TCP segment, when the postdissector hands the
-- bytes on (nil: from TCP, with field extractors). Bytes that wait for the
-- postdissector are never left to Wireshark's reassembly (parser.deferred):
-- the parser holds them itself, on later passes too. The segment's
-- acknowledgement of the other direction is read before its bytes, as the
-- Python reassembler reads a segment: what it gives up comes first in the packet.
local function dissect_tcp(tvb, pinfo, tree, segment)
    if pinfo.visited then
        redissect_tcp(tvb, pinfo, tree)
        return tvb:len()
    end
    local number = pinfo.number
    segment = segment or field_segment(pinfo, number)
    if segment == nil then
        deferred = { number = number, carrier = "tcp" }
        return tvb:len()
    end
    local ctx = name_packet(pinfo, number)
    local tunnel = tunnels[ctx.stream]
    local entries = tunnel and note_tcp_ack(pinfo, ctx, segment)
    if entries then
        for index = 1, #entries do entries[index].from_dissector, entries[index].acked = true, true end
    end
    local start
    start, entries = take_tcp_bytes(tvb, pinfo, ctx, tunnel, segment, entries)
    if entries and #entries > 0 then show_tvb_entries(entries, tvb, start, pinfo, tree) end
    return tvb:len()
end

function mproxy.dissector(tvb, pinfo, tree)
    return dissect_tcp(tvb, pinfo, tree)
end

-- A payload that starts with a believable frame: 0xFE, a sane hdrlen, a header that parses.
local function starts_with_frame(tvb)
    if tvb:len() < 2 or tvb(0, 1):uint() ~= VERSION_1_BYTE then return false end
    local hdrlen = tvb(1, 1):uint()
    if hdrlen < 5 or tvb:len() < 2 + hdrlen then return false end
    local h = parse_header(tvb:raw(2, hdrlen))
    return looks_like_frame_start(h)
end

----------------------------------------------------------------------------
-- WebSocket: our own reassembly across messages
----------------------------------------------------------------------------

local function show_continuation(tvb, pinfo, tree)
    local waiting = tree:add(mproxy, tvb(0, 0), "M-PROXY stream bytes (the frame continues in a later message)")
    local later = reassembled_in[pinfo.number]
    if later then waiting:add(pf.reassembled_in, tvb(0, 0), later[1]):set_generated() end
end

-- Feed one direction's M-PROXY stream bytes that arrived in this packet; the
-- records they complete are kept (with the frame where each began) and returned.
local function feed_stream(pinfo, stream, ctx, data)
    local key = ctx.key
    local pending = ws_pending[key] or { frames = {} }
    ws_pending[key] = pending
    local parser = parsers[key]
    if parser == nil then
        parser = new_parser()
        parsers[key] = parser
    end
    tunnels[stream].directions[key] = ctx.peer
    parser.stream_end = (parser.stream_end or 0) + #data
    note_arrival(parser, pinfo.number)
    -- arrivals: where in the held bytes those of each packet begin
    local arrivals = pending.frames
    if #arrivals == 0 or arrivals[#arrivals].number ~= pinfo.number then
        arrivals[#arrivals + 1] = { number = pinfo.number, at = held_length(parser) }
    end
    if parser.need and parser.stream_end < parser.need then
        -- the frame under way is still incomplete: keep the bytes, parse nothing
        hold(parser, data)
        if #data > 0 then continuations[pinfo.number] = true end
        return {}
    end
    local buf = held(parser) .. data
    local records, consumed = parser:run(buf)
    local entries = {}
    for _, record in ipairs(records) do
        local header_in
        if record.pos ~= nil then
            for _, arrival in ipairs(arrivals) do
                if arrival.at <= record.pos then header_in = arrival.number end
            end
            if header_in == pinfo.number then
                header_in = nil
            elseif header_in then
                reassembled_in[header_in] = reassembled_in[header_in] or {}
                table.insert(reassembled_in[header_in], pinfo.number)
            end
        end
        entries[#entries + 1] = remember(pinfo, record, buf, ctx, header_in)
    end
    parser.pending = buf:sub(consumed + 1)
    local kept = {}
    for index, arrival in ipairs(arrivals) do
        local next_at = arrivals[index + 1] and arrivals[index + 1].at or #buf
        if next_at > consumed then
            kept[#kept + 1] = { number = arrival.number, at = math.max(arrival.at - consumed, 0) }
        end
    end
    pending.frames = kept
    if #records == 0 and #data > 0 then continuations[pinfo.number] = true end
    return entries
end

-- nbytes of a direction's M-PROXY stream lost here (the unframer lost them).
local function gap_stream(pinfo, stream, ctx, nbytes)
    local parser = parsers[ctx.key]
    if parser == nil then
        parser = new_parser()
        parsers[ctx.key] = parser
    end
    tunnels[stream].directions[ctx.key] = ctx.peer
    local buf = held(parser)
    local entries = {}
    for _, record in ipairs(parser:gap(buf, nbytes)) do
        entries[#entries + 1] = remember(pinfo, record, buf, ctx)
    end
    parser.pending, parser.need = "", nil
    parser.stream_end = (parser.stream_end or 0) + nbytes
    note_arrival(parser, pinfo.number)
    if ws_pending[ctx.key] then ws_pending[ctx.key].frames = {} end
    return entries
end

-- What the unframer made of a packet's bytes, in order: payload, lost bytes.
local function feed_items(pinfo, stream, ctx, items)
    local entries, run = {}, {}
    local function flush()
        if #run == 0 then return end
        for _, entry in ipairs(feed_stream(pinfo, stream, ctx, table.concat(run))) do entries[#entries + 1] = entry end
        run = {}
    end
    for _, item in ipairs(items) do
        if type(item) == "number" then
            flush()
            for _, entry in ipairs(gap_stream(pinfo, stream, ctx, item)) do entries[#entries + 1] = entry end
        elseif #item > 0 then
            run[#run + 1] = item
        end
    end
    flush()
    return entries
end

local function show_stream_entries(entries, tvb, pinfo, tree)
    if #entries == 0 then
        if continuations[pinfo.number] then
            show_continuation(tvb, pinfo, tree)
            pinfo.cols.protocol = "M-PROXY"
            pinfo.cols.info = "M-PROXY continuation"
        end
        return
    end
    local lines, bodies = show_entries(entries, pinfo, tree, tvb)
    set_columns(pinfo, lines)
    dissect_bodies(bodies, pinfo, tree, lines)
end

-- A WebSocket message handed over by Wireshark's websocket dissector.
local function dissect_ws(tvb, pinfo, tree)
    if pinfo.visited then return tvb:len() end
    local stream = stream_id(pinfo)
    local ctx = context(pinfo)
    show_stream_entries(feed_stream(pinfo, stream, ctx, tvb:raw(0, tvb:len())), tvb, pinfo, tree)
    return tvb:len()
end

local function heur_ws(tvb, pinfo, tree)
    local stream = stream_id(pinfo)
    if tunnels[stream] == nil then
        if pinfo.visited or not starts_with_frame(tvb) then return false end
        new_tunnel(stream, "websocket")
    end
    dissect_ws(tvb, pinfo, tree)
    return true
end

----------------------------------------------------------------------------
-- The TCP heuristic: raw M-PROXY, or the WebSocket upgrade of a tunnel on any port
----------------------------------------------------------------------------

local mproxy_ws_upgrade = Proto("mproxy_upgrade", "M-PROXY WebSocket upgrade")
local mproxy_ws = Proto("mproxy_ws", "M-PROXY WebSocket tunnel")

local bxor = (bit32 and bit32.bxor) or bit.bxor
local websocket_dissector = Dissector.get("websocket")

local function upgrade_request(tvb)
    if tvb:len() < 16 then return nil end
    local head = tvb:raw(0, math.min(tvb:len(), 4096))
    if head:sub(1, 4) ~= "GET " then return nil end
    if not head:lower():find("\r\nupgrade:[ \t]*websocket") then return nil end
    return head
end

-- A telebit tunnel: the relay is asked for the M-PROXY versions or handed a token.
local function is_tunnel_upgrade(head)
    local target = head:match("^GET ([^ ]*)") or ""
    local lower = head:lower()
    return target:find("[?&]access_token=") ~= nil or target:find("[?&]versions=") ~= nil
        or lower:find("\r\nauthorization:[ \t]*bearer ") ~= nil
end

-- Any other WebSocket upgrade on a port Wireshark does not know: hand the
-- connection to http (which hands it to websocket, whose messages reach our
-- "ws" heuristic). TCP lets only the dissector it calls ask for more data;
-- http and websocket sit two calls deeper, so that allowance is passed on.
function mproxy_ws_upgrade.dissector(tvb, pinfo, tree)
    local http = Dissector.get("http")
    if pinfo.can_desegment > 0 then pinfo.can_desegment = pinfo.can_desegment + 2 end
    return http:call(tvb, pinfo, tree)
end


local function ws_direction(key, tunnel)
    local st = ws_dirs[key]
    if st == nil then
        local client = clients[tunnel.stream]
        st = { base = 0, phase = tunnel.after_http and "ws" or "http", head = "", hdr = "", remaining = 0,
               mask_pos = 0, notes = {}, from_server = client ~= nil and client ~= key, tunnel = tunnel,
               z_history = {}, z_out = 0, z_held = 0 }
        ws_dirs[key] = st
    end
    return st
end

-- Unmasking under Lua 5.2 (Wireshark 4.0) goes a byte at a time through
-- XOR tables, one per key byte (made when first needed) that give each byte's
-- unmasked character: string.byte and one concatenation move up to
-- UNMASK_BLOCK bytes per call of a function compiled for that many (once per
-- length), with no C call per byte or word. (Its locals and as many operands
-- stay under Lua's 250 registers.)
local UNMASK_BLOCK = 120
local unmask_blocks = {} -- length -> function unmasking that many bytes at data[at]

local function unmask_block(length)
    local block = unmask_blocks[length]
    if block == nil then
        local names, lookups = {}, {}
        for index = 1, length do
            names[index] = "b" .. index
            lookups[index] = "t" .. (index - 1) % 4 .. "[b" .. index .. "]"
        end
        block = load("local byte = string.byte\n"
            .. "return function(data, at, t0, t1, t2, t3)\n"
            .. "    local " .. table.concat(names, ", ") .. " = byte(data, at, at + " .. length - 1 .. ")\n"
            .. "    return " .. table.concat(lookups, " .. ") .. "\n"
            .. "end\n")()
        unmask_blocks[length] = block
    end
    return block
end

local xor_tables = {} -- key byte -> { [byte] = the character byte XOR key byte }

local function xor_table(key_byte)
    local xored = xor_tables[key_byte]
    if xored == nil then
        xored = {}
        for value = 0, 255 do xored[value] = string.char(bxor(value, key_byte)) end
        xor_tables[key_byte] = xored
    end
    return xored
end

-- Lua 5.3 and later (Wireshark 4.2+) have 64-bit integers, ~ and
-- string.unpack: eight bytes a step, about three times faster again. Lua 5.2
-- cannot even parse ~, so this is compiled only where it runs.
local unmask_native = string.unpack and load([[
    local unpack, pack, rep, concat, char, min = string.unpack, string.pack, string.rep, table.concat, string.char, math.min
    local table_unpack = table.unpack
    local formats = {}
    return function(data, key)
        local k4 = unpack("<I4", key)
        local k8 = k4 | (k4 << 32)
        local n = #data
        local words = n // 8
        local out = {}
        local first = 0
        while first < words do
            local count = min(1024, words - first)
            local format = formats[count]
            if format == nil then
                format = "<" .. rep("i8", count)
                formats[count] = format
            end
            local values = { unpack(format, data, first * 8 + 1) }
            for index = 1, count do values[index] = values[index] ~ k8 end
            out[#out + 1] = pack(format, table_unpack(values, 1, count))
            first = first + count
        end
        for index = words * 8 + 1, n do
            out[#out + 1] = char(data:byte(index) ~ key:byte((index - 1) % 4 + 1))
        end
        return concat(out)
    end
]])()

-- data XOR the mask, the mask starting at its byte mask_pos % 4.
local function unmask(data, mask, mask_pos)
    local phase = mask_pos % 4
    local key = mask:sub(phase + 1) .. mask:sub(1, phase)
    if unmask_native then return unmask_native(data, key) end
    local k1, k2, k3, k4 = key:byte(1, 4)
    local t0, t1, t2, t3 = xor_table(k1), xor_table(k2), xor_table(k3), xor_table(k4)
    local n = #data
    local rest = n % UNMASK_BLOCK
    local blocks = (n - rest) / UNMASK_BLOCK
    local out = {}
    local full = unmask_block(UNMASK_BLOCK)
    for block = 1, blocks do
        out[block] = full(data, (block - 1) * UNMASK_BLOCK + 1, t0, t1, t2, t3)
    end
    if rest > 0 then out[blocks + 1] = unmask_block(rest)(data, n - rest + 1, t0, t1, t2, t3) end
    return table.concat(out)
end

local function start_ws_frame(st, header)
    local b0, b1 = header:byte(1, 2)
    local opcode, fin, masked = b0 % 16, b0 >= 128, b1 >= 128
    local len7 = b1 % 128
    local at, length = 3, len7
    if len7 == 126 then
        length = header:byte(3) * 256 + header:byte(4)
        at = 5
    elseif len7 == 127 then
        length = 0
        -- in floats: Lua 5.4's integers would wrap a length of 2^63 or more to a negative one (a hang)
        for index = 3, 10 do length = length * 256.0 + header:byte(index) end
        at = 11
    end
    st.mask = masked and header:sub(at, at + 3) or nil
    if masked and st.from_server then
        st.notes[#st.notes + 1] = { "server_frame_masked", string.format("opcode %d, %.0f bytes", opcode, length) }
    end
    st.mask_pos, st.remaining, st.fin = 0, length, fin
    st.frames = (st.frames or 0) + 1
    local compressed = math.floor(b0 / 64) % 2 == 1
    if opcode >= 8 then
        st.sink = opcode == 8 and "close" or "control"
    elseif opcode == 0 then
        st.sink = st.msg_sink or "orphan"
    elseif opcode == 1 or opcode == 2 then
        st.msg_sink = "skip"
        if opcode == 2 and not compressed then
            st.msg_sink = "binary"
        elseif opcode == 2 and st.tunnel.deflate then
            st.msg_sink = "deflate"
            st.z_message, st.z_given, st.z_dropping = {}, 0, false
        end
        st.sink = st.msg_sink
    else
        st.sink = "skip"
    end
end

-- Bytes of one direction's permessage-deflate stream kept to inflate later
-- messages: past this, compressed messages are skipped and reported.
local MAX_DEFLATE_HISTORY = 4194304
local DEFLATE_TAIL = "\0\0\255\255"

-- An empty stored block: raw deflate input starting with it is never taken
-- for a zlib header by TvbRange:uncompress (which tries zlib first).
local DEFLATE_START = "\0\0\0\255\255"

-- One compressed message, inflated (nil: it does not inflate). Lua has no
-- zlib stream that lives across packets: TvbRange:uncompress inflates one
-- buffer (raw deflate too). With context takeover (the default) a message may
-- refer to earlier ones, so the direction's compressed history is inflated
-- again with it and the message is what comes after the earlier output.
-- complete false: the message so far, without its end; zlib gives every
-- byte those bytes decode to, as the Python unframer's inflater does after
-- the same packet, and nothing is kept.
local function inflate_message(st, compressed, complete)
    local own = st.tunnel.deflate[st.from_server and "server_no_context" or "client_no_context"]
    local input = complete and compressed .. DEFLATE_TAIL or compressed
    if not own then input = table.concat(st.z_history) .. input end
    local ok, inflated = pcall(function()
        return ByteArray.new(DEFLATE_START .. input, true):tvb("Compressed message"):range()
            :uncompress("Inflated message")
    end)
    if not ok or inflated == nil then return nil end
    local text = inflated:raw()
    if own then return text end
    local message = text:sub(st.z_out + 1)
    if complete then
        st.z_out = #text
        st.z_history[#st.z_history + 1] = compressed .. DEFLATE_TAIL
    end
    return message
end

-- What this message has inflated to so far past what was handed on: the
-- M-PROXY stream gets it in the packet whose bytes it came from.
local function deliver_inflated(st, message, out)
    if #message > MAX_MESSAGE then message = message:sub(1, MAX_MESSAGE) end
    if #message > st.z_given then
        out[#out + 1] = message:sub(st.z_given + 1)
        st.z_given = #message
    end
end

-- At the end of a packet inside a compressed message: its bytes so far.
local function inflate_so_far(st, out)
    if st.z_broken or st.z_dropping or not st.z_fed then return end
    st.z_fed = false
    local compressed = table.concat(st.z_message)
    if st.z_held + #compressed > MAX_DEFLATE_HISTORY then return end
    local message = inflate_message(st, compressed, false)
    if message then deliver_inflated(st, message, out) end
end

-- A fresh compression context (after lost bytes, as the Python unframer
-- starts a new inflater): earlier messages are no longer history.
local function forget_deflate_history(st)
    st.z_history, st.z_out, st.z_held = {}, 0, 0
end

local function end_deflate_message(st, out)
    local compressed = table.concat(st.z_message)
    st.z_message = nil
    if st.z_dropping then
        st.z_dropping = false
        forget_deflate_history(st)
        return
    end
    if st.z_broken then return end
    local message
    if st.z_held + #compressed <= MAX_DEFLATE_HISTORY then
        st.z_held = st.z_held + #compressed
        message = inflate_message(st, compressed, true)
    end
    if message == nil then
        st.z_broken = true
        st.notes[#st.notes + 1] = { "inflate_error", string.format(
            "%d compressed bytes not inflated (after %d bytes of this direction's compressed stream)",
            #compressed, st.z_held - #compressed) }
        return
    end
    if #message > MAX_MESSAGE then
        st.notes[#st.notes + 1] = { "decompression_capped", string.format("message inflated past %d bytes", MAX_MESSAGE) }
    end
    deliver_inflated(st, message, out)
end

local function end_ws_frame(st, out)
    if st.sink == "close" then
        st.closed = true
    elseif st.sink == "deflate" and st.fin then
        end_deflate_message(st, out)
        st.msg_sink = nil
    elseif (st.sink == "binary" or st.sink == "skip") and st.fin then
        st.msg_sink = nil
    end
    st.sink = nil
end

local function ws_header_size(b0, b1)
    local len7 = b1 % 128
    return 2 + (len7 == 126 and 2 or (len7 == 127 and 8 or 0)) + (b1 >= 128 and 4 or 0)
end

----------------------------------------------------------------------------
-- Lost bytes and resynchronisation (websocket.py WebSocketUnframer.gap, find_frame_start)
----------------------------------------------------------------------------

local WS_KNOWN_OPCODES = { [0] = true, [1] = true, [2] = true, [8] = true, [9] = true, [10] = true }
local MPROXY_HEAD = 2 + 255
local MAX_PLAUSIBLE_FRAME = 2147483648

-- fin, rsv (the bits of 0x70), opcode, payload length, minimal, mask, header size of a header at buf[i].
local function ws_header_at(buf, i)
    local b0, b1 = buf:byte(i, i + 1)
    local size = ws_header_size(b0, b1)
    local len7 = b1 % 128
    local length, minimal, at = len7, true, i + 2
    if len7 == 126 then
        length = buf:byte(i + 2) * 256 + buf:byte(i + 3)
        minimal, at = length >= 126, i + 4
    elseif len7 == 127 then
        length = 0
        for index = i + 2, i + 9 do length = length * 256 + buf:byte(index) end
        minimal, at = length > 65535, i + 10
    end
    local mask = b1 >= 128 and buf:sub(at, at + 3) or nil
    return { fin = b0 >= 128, rsv = math.floor(b0 / 16) % 8, opcode = b0 % 16, length = length,
             minimal = minimal, mask = mask, size = size }
end

-- The shape a real peer's frame header has (websocket.py _plausible).
local function ws_plausible(h, masked, deflate)
    if not WS_KNOWN_OPCODES[h.opcode] or h.rsv % 4 ~= 0 or not h.minimal or h.length >= MAX_PLAUSIBLE_FRAME then
        return false
    end
    if masked ~= nil and (h.mask ~= nil) ~= masked then return false end
    if h.rsv >= 4 and (deflate == false or (h.opcode ~= 1 and h.opcode ~= 2)) then return false end
    return not (h.opcode >= 8 and (not h.fin or h.length > 125))
end

-- A binary message whose first bytes read as the start of an M-PROXY frame.
local function ws_payload_is_mproxy(h, payload)
    if h.mask then payload = unmask(payload, h.mask, 0) end
    if h.rsv >= 4 then
        local ok, inflated = pcall(function()
            return ByteArray.new(DEFLATE_START .. payload, true):tvb("Compressed message"):range()
                :uncompress("Inflated message")
        end)
        if not ok or inflated == nil then return false end
        payload = inflated:raw():sub(1, MPROXY_HEAD)
    end
    local hdrlen = payload:byte(2)
    if payload:byte(1) ~= VERSION_1_BYTE or hdrlen == nil or #payload < 2 + hdrlen then return false end
    return looks_like_frame_start(parse_header(payload:sub(3, 2 + hdrlen)))
end

-- "yes", "no" or "more" (websocket.py _binary_verdict); at: where the payload starts.
local function ws_binary_verdict(h, buf, at, final)
    local want = math.min(h.length, MPROXY_HEAD)
    local have = math.min(#buf - at + 1, want)
    if have < want and not final then
        if have == 0 or h.rsv >= 4 then return "more" end
        local head = buf:sub(at, at + math.min(have, 2) - 1)
        if h.mask then head = unmask(head, h.mask, 0) end
        if head:byte(1) ~= VERSION_1_BYTE then return "no" end
        if #head < 2 or have < 2 + head:byte(2) then return "more" end
    end
    if have > 0 and ws_payload_is_mproxy(h, buf:sub(at, at + have - 1)) then return "yes" end
    return "no"
end

-- Where the framing plausibly resumes in buf (1-based, nil: not found) and
-- how many leading bytes can go for sure (websocket.py find_frame_start).
local function find_ws_start(buf, masked, deflate, final)
    local n = #buf
    for i = 1, n do
        local b0 = buf:byte(i)
        if WS_KNOWN_OPCODES[b0 % 16] and math.floor(b0 / 16) % 4 == 0 then
            if n - i + 1 < 2 then return nil, final and n or i - 1 end
            local size = ws_header_size(b0, buf:byte(i + 1))
            if n - i + 1 < size then
                if not final then return nil, i - 1 end
            else
                local h = ws_header_at(buf, i)
                if h.opcode == 2 and h.length > 0 and ws_plausible(h, masked, deflate) then
                    local verdict = ws_binary_verdict(h, buf, i + size, final)
                    if verdict == "yes" then return i, i - 1 end
                    if verdict == "more" then return nil, i - 1 end
                end
            end
        end
    end
    return nil, n
end

local function lose_framing(st)
    st.sink, st.msg_sink, st.remaining, st.hdr = nil, nil, 0, ""
    st.z_message, st.z_dropping = nil, false
    forget_deflate_history(st)
    st.resyncing, st.rbuf = true, ""
end

-- length bytes of the direction were lost here (WebSocketUnframer.gap): out
-- gets the M-PROXY bytes lost, as a number, among the payload strings.
local function ws_gap(st, length, out)
    if length <= 0 or st.closed or st.phase ~= "ws" then return end
    if st.resyncing then
        st.rbuf = ""
        out[#out + 1] = length
        return
    end
    if st.sink ~= nil then
        local lost = math.min(length, st.remaining)
        st.remaining, st.mask_pos = st.remaining - lost, st.mask_pos + lost
        if st.sink == "binary" then
            out[#out + 1] = lost
        elseif st.sink == "deflate" and not st.z_dropping then
            st.notes[#st.notes + 1] = { "gap_in_compressed_message", string.format("%d compressed bytes lost", lost) }
            out[#out + 1] = lost
            st.z_dropping = true
        end
        length = length - lost
        if st.remaining == 0 then end_ws_frame(st, out) end
        if length == 0 then return end
    end
    local where = #st.hdr > 0 and "in a frame header" or "at a frame boundary"
    st.notes[#st.notes + 1] = { "ws_sync_lost",
        string.format("%d bytes lost %s: framing lost, resynchronising", length, where) }
    out[#out + 1] = length
    lose_framing(st)
end

-- Bytes after lost framing: held until a believable frame header shows
-- where the framing resumes; returns the bytes from there (nil: not yet).
local function ws_resync(st, data, final)
    st.rbuf = st.rbuf .. data
    local deflate = st.tunnel.deflate ~= nil
    local at, safe = find_ws_start(st.rbuf, not st.from_server, deflate, final)
    if at == nil then
        st.rbuf = st.rbuf:sub(safe + 1)
        return nil
    end
    local rest = st.rbuf:sub(at)
    st.rbuf, st.resyncing = "", false
    if (st.frames or 0) > 0 then
        st.notes[#st.notes + 1] = { "ws_resynced", string.format("framing found again after %d skipped bytes", at - 1) }
    end
    return rest
end

-- The binary message payload in data (WebSocketUnframer: payload is
-- delivered as it arrives, not per message, like the Python carrier): a list
-- of payload strings and, where bytes were lost, their count.
local function unframe(st, data, final)
    local out, pos, n = {}, 1, #data
    while pos <= n and not st.closed do
        if st.resyncing then
            data = ws_resync(st, data:sub(pos), final)
            if data == nil then break end
            pos, n = 1, #data
        elseif st.sink ~= nil then
            local take = math.min(st.remaining, n - pos + 1)
            if take > 0 then
                if st.sink == "binary" or st.sink == "deflate" then
                    local chunk = data:sub(pos, pos + take - 1)
                    if st.mask then chunk = unmask(chunk, st.mask, st.mask_pos) end
                    local into = st.sink == "binary" and out or st.z_message
                    into[#into + 1] = chunk
                    st.z_fed = st.sink == "deflate"
                end
                st.mask_pos = st.mask_pos + take
                st.remaining = st.remaining - take
                pos = pos + take
            end
            if st.remaining == 0 then end_ws_frame(st, out) end
        else
            st.hdr = st.hdr .. data:sub(pos, pos)
            pos = pos + 1
            if #st.hdr >= 2 and #st.hdr == ws_header_size(st.hdr:byte(1, 2)) then
                local header = st.hdr
                st.hdr = ""
                start_ws_frame(st, header)
                if st.remaining == 0 then end_ws_frame(st, out) end
            end
        end
    end
    if st.z_message then inflate_so_far(st, out) end
    return out
end

-- The upgrade request or response, line by line (http itself would take the
-- connection over for its websocket dissector, which reports whole messages).
-- permessage-deflate as the 101 response accepts it (nil: not negotiated).
local function negotiated_deflate(head)
    for line in head:gmatch("[^\r\n]+") do
        local value = line:lower():match("^sec%-websocket%-extensions:%s*(.*)$")
        if value and value:find("permessage%-deflate") then
            return { server_no_context = value:find("server_no_context_takeover", 1, true) ~= nil,
                     client_no_context = value:find("client_no_context_takeover", 1, true) ~= nil }
        end
    end
    return nil
end

local function show_http_head(tvb, head, pinfo, tree)
    local text = head[3]
    local lines = {}
    for line in (text .. "\r\n"):gmatch("(.-)\r\n") do lines[#lines + 1] = line end
    local first = lines[1] or ""
    if not mproxy.prefs.show_tokens then first = first:gsub("(access_token=)[^&%s]*", "%1" .. REDACTED) end
    first = display_text(first)
    local item = tree:add(mproxy_ws, tvb(head[1], head[2]), "WebSocket upgrade: " .. first)
    for index = 2, #lines do
        local line = lines[index]
        if not mproxy.prefs.show_tokens and line:lower():match("^authorization:") then
            line = line:match("^[^:]*") .. ": " .. REDACTED
        end
        item:add(mproxy_ws, tvb(head[1], head[2]), display_text(line))
    end
    pinfo.cols.protocol = "M-PROXY"
    pinfo.cols.info = "WebSocket upgrade " .. first
end

-- What the unframer found wrong with the WebSocket framing in this packet.
local function take_ws_notes(st, number)
    if #st.notes == 0 then return false end
    local notes = ws_notes[number] or {}
    for _, note in ipairs(st.notes) do notes[#notes + 1] = note end
    ws_notes[number] = notes
    st.notes = {}
    return true
end

local function show_ws_notes(tvb, pinfo, tree)
    for _, note in ipairs(ws_notes[pinfo.number] or {}) do
        local kind, detail = note[1], note[2]
        local item = tree:add(mproxy, tvb(0, 0), "WebSocket carrier: " .. detail)
        item:add_proto_expert_info(carrier_ex[kind], carrier_ex_text[kind] .. ": " .. detail)
    end
end

-- Give a WebSocket direction's holes up to stream offset target (the peer
-- acknowledged past them, too much waits behind them, or the tunnel ended):
-- the unframer loses the bytes (WebSocketUnframer.gap), then unframes what
-- waited after them. Returns the records this completes.
-- number: the packet the records go to when it is not pinfo's (the end of the capture).
local function give_up_ws_holes(st, target, pinfo, ctx, number)
    number = number or pinfo.number
    local at = number == pinfo.number and pinfo or { number = number }
    local entries = {}
    local function feed(items)
        for _, entry in ipairs(feed_items(at, ctx.stream, ctx, items)) do entries[#entries + 1] = entry end
    end
    while st.base < target do
        local hole_end = st.stash and st.stash[1] and math.min(st.stash[1].start, target) or target
        local items = {}
        ws_gap(st, hole_end - st.base, items)
        st.base = hole_end
        local data = drain_stash(st, "", st.base, number)
        st.base = st.base + #data
        if st.phase == "ws" and not st.tunnel.refused then
            for _, item in ipairs(unframe(st, data)) do items[#items + 1] = item end
        end
        feed(items)
    end
    take_ws_notes(st, number)
    return entries
end

-- The same for a WebSocket tunnel's direction, also when nothing waits yet
-- (the Python reassembler declares the bytes lost at that acknowledgement).
local function note_ws_ack(pinfo, names, segment)
    local key = names.peer
    local st = ws_dirs[key]
    if st == nil or st.origin == nil or st.phase ~= "ws" then return nil end
    local target = acked_past(st, segment, st.base)
    if target == nil then return nil end
    return give_up_ws_holes(st, target, pinfo, { key = key, peer = names.key, stream = names.stream })
end

-- This packet's bytes of one WebSocket direction (our own unframer): entries
-- with the records they complete appended (nil: none), and whether M-PROXY
-- bytes were fed (a packet of a frame still under way shows it continues).
local function take_ws_bytes(tvb, pinfo, tree, ctx, segment, entries)
    local stream = ctx.stream
    local st = ws_direction(ctx.key, tunnels[stream])
    st.last_frame, st.peer = pinfo.number, ctx.peer
    local start = segment and tvb_stream_offset(tvb:len(), st, segment) or st.base
    if start > st.base then
        -- bytes after a hole wait for it, as in the Python decoder's TCP reassembler (see give_up_ws_holes)
        tunnels[stream].stashed = true
        if stash_piece(st, start, tvb:raw(0, tvb:len())) > MAX_STASHED then
            entries = append_entries(entries, give_up_ws_holes(st, st.stash[1].start, pinfo, ctx))
        end
        return entries
    end
    local skip = st.base - start
    if skip >= tvb:len() then return entries end
    local data = tvb:raw(skip, tvb:len() - skip)
    st.base = st.base + #data
    if st.stash and st.stash[1] then
        local before = #data
        data = drain_stash(st, data, st.base, pinfo.number)
        st.base = st.base + #data - before
    end
    if st.phase == "http" then
        local before = #st.head
        st.head = st.head .. data
        local stop = st.head:find("\r\n\r\n", 1, true)
        if stop == nil then
            if #st.head > 65536 then st.phase = "none" end
            return entries
        end
        local head_in_tvb = stop + 3 - before
        ws_heads[pinfo.number] = { skip, head_in_tvb, st.head:sub(1, stop - 1) }
        show_http_head(tvb, ws_heads[pinfo.number], pinfo, tree)
        data = st.head:sub(stop + 4)
        local status = st.head:match("^HTTP/%S+ (%d+)")
        st.from_server = status ~= nil
        if status == "101" then tunnels[stream].deflate = negotiated_deflate(st.head) end
        st.head = ""
        st.phase = "ws"
        if status ~= nil and status ~= "101" then
            tunnels[stream].refused = true
        end
    end
    if st.phase ~= "ws" or tunnels[stream].refused then return entries end
    local items = unframe(st, data)
    if take_ws_notes(st, pinfo.number) then show_ws_notes(tvb, pinfo, tree) end
    if #items == 0 then return entries end
    return append_entries(entries, feed_items(pinfo, stream, ctx, items)), true
end

-- segment: as for dissect_tcp (nil after http: its bytes come in order, not
-- placed by sequence number); the acknowledgement comes first here too.
local function dissect_own_ws(tvb, pinfo, tree, segment)
    local stream = stream_id(pinfo)
    local ctx = context(pinfo)
    if pinfo.visited then
        local head = ws_heads[pinfo.number]
        if head then show_http_head(tvb, head, pinfo, tree) end
        show_ws_notes(tvb, pinfo, tree)
        return tvb:len()
    end
    if not tunnels[stream].after_http then
        segment = segment or field_segment(pinfo)
        if segment == nil then
            deferred = { number = pinfo.number, carrier = "websocket" }
            return tvb:len()
        end
    end
    local entries, fed = take_ws_bytes(tvb, pinfo, tree, ctx, segment, segment and note_ws_ack(pinfo, ctx, segment))
    if fed or (entries and #entries > 0) then show_stream_entries(entries or {}, tvb, pinfo, tree) end
    return tvb:len()
end

-- The first WebSocket frame of a connection http upgraded carries M-PROXY.
local function first_ws_payload_is_mproxy(tvb)
    if tvb:len() < 2 then return false end
    local b0, b1 = tvb(0, 1):uint(), tvb(1, 1):uint()
    local opcode, size = b0 % 16, ws_header_size(b0, b1)
    if (opcode ~= 1 and opcode ~= 2) or tvb:len() < size + 2 then return false end
    local payload = tvb:raw(size, math.min(tvb:len() - size, 2 + 255))
    if b1 >= 128 then payload = unmask(payload, tvb:raw(size - 4, 4), 0) end
    local hdrlen = payload:byte(2)
    if payload:byte(1) ~= VERSION_1_BYTE or hdrlen < 5 or #payload < 2 + hdrlen then return false end
    return looks_like_frame_start(parse_header(payload:sub(3, 2 + hdrlen)))
end

-- Registered for the "websocket" upgrade token in http.upgrade, so http hands
-- every upgraded connection (over TCP or TLS, e.g. wss) here: M-PROXY
-- tunnels are unframed by us, streaming, everything else goes on to
-- Wireshark's websocket dissector unchanged.
function mproxy_ws.dissector(tvb, pinfo, tree)
    local stream = stream_id(pinfo)
    local tunnel = tunnels[stream]
    if tunnel == nil then
        if not pinfo.visited and ws_verdicts[stream] == nil then
            ws_verdicts[stream] = first_ws_payload_is_mproxy(tvb)
            if ws_verdicts[stream] then
                new_tunnel(stream, "websocket")
                tunnels[stream].after_http = true
            end
        end
        tunnel = tunnels[stream]
    end
    if tunnel == nil or tunnel.carrier ~= "websocket" then
        if pinfo.can_desegment > 0 then pinfo.can_desegment = pinfo.can_desegment + 1 end
        return websocket_dissector:call(tvb, pinfo, tree)
    end
    return dissect_own_ws(tvb, pinfo, tree)
end

local function heur_tcp(tvb, pinfo, tree)
    local stream = stream_id(pinfo)
    if starts_with_frame(tvb) then
        new_tunnel(stream, "tcp")
        pinfo.conversation = mproxy
        dissect_tcp(tvb, pinfo, tree)
        return true
    end
    local head = upgrade_request(tvb)
    if head ~= nil then
        if is_tunnel_upgrade(head) then
            new_tunnel(stream, "websocket")
            pinfo.conversation = mproxy_ws
            dissect_own_ws(tvb, pinfo, tree)
        else
            pinfo.conversation = mproxy_ws_upgrade
            mproxy_ws_upgrade.dissector(tvb, pinfo, tree)
        end
        return true
    end
    return false
end

----------------------------------------------------------------------------
-- The end of a raw tunnel: what the parsers still hold is decoded as the
-- Python decoder does at FIN from both sides, or at a RST (FrameParser.close)
----------------------------------------------------------------------------

local mproxy_end = Proto("mproxy_end", "M-PROXY stream end")

-- at_capture_end: lost bytes go to the tunnel's last packet, the records the
-- parsers still held to the last packet that carried bytes of their direction.
local function finish_tunnel(stream, tunnel, pinfo, at_capture_end)
    tunnel.finished = true
    if tunnel.directions == nil then return end
    local entries = {}
    for key, st in pairs(ws_dirs) do
        if st.tunnel == tunnel and st.stash and #st.stash > 0 then
            local last = st.stash[#st.stash]
            local ctx = { key = key, peer = st.peer, stream = stream }
            local number = at_capture_end and tunnel.last_number or nil
            for _, entry in ipairs(give_up_ws_holes(st, last.start + #last.data, pinfo, ctx, number)) do
                entries[#entries + 1] = entry
            end
        end
    end
    local client = clients[stream]
    local keys = {}
    for key in pairs(tunnel.directions) do
        if key == client then table.insert(keys, 1, key) else keys[#keys + 1] = key end
    end
    for _, key in ipairs(keys) do
        local parser = parsers[key]
        if parser and parser.stash and #parser.stash > 0 then
            local last = parser.stash[#parser.stash]
            local ctx = { key = key, peer = tunnel.directions[key], stream = stream }
            local number = at_capture_end and tunnel.last_number or nil
            for _, entry in ipairs(give_up_holes(parser, last.start + #last.data, pinfo, ctx, number)) do
                entries[#entries + 1] = entry
            end
        end
        if parser then
            local buf = held(parser)
            local records = parser:close(buf)
            parser.pending = ""
            local number = at_capture_end and parser.last_packet or nil
            for _, record in ipairs(records) do
                entries[#entries + 1] = remember(pinfo, record, buf,
                    { key = key, peer = tunnel.directions[key], stream = stream }, nil, nil, number)
            end
        end
    end
    return entries
end

-- Wireshark has no end-of-capture event. The first call of a later pass
-- (tshark -2, the GUI re-dissecting a packet) knows the first pass is over:
-- tunnels still open then end as the Python decoder ends them at the end of
-- the capture.
local function note_capture_end(pinfo)
    if not pinfo.visited or first_pass.done then return end
    first_pass.done = true
    local streams = {}
    for stream, tunnel in pairs(tunnels) do
        if not tunnel.finished then streams[#streams + 1] = stream end
    end
    table.sort(streams, function(a, b) return tunnels[a].order < tunnels[b].order end)
    for _, stream in ipairs(streams) do finish_tunnel(stream, tunnels[stream], pinfo, true) end
end

-- A segment that fills a hole (it came after the bytes behind it) is one
-- Wireshark 4.0's TCP does not hand on; its payload is taken from the tcp
-- tree here, as the Python reassembler would take it.
local function note_late_segment(pinfo, stream, segment)
    local key = endpoint_key(pinfo)
    local parser = parsers[key]
    if parser == nil or parser.last_frame == pinfo.number or not parser.stash or #parser.stash == 0 then
        return nil
    end
    local data = segment.payload()
    if #data == 0 then return nil end
    local start = (segment.seq - parser.origin) % 4294967296
    local expected = parser.base + held_length(parser)
    if start > expected or start + #data <= expected then return nil end
    local ctx = context(pinfo)
    note_arrival(parser, pinfo.number)
    local buf = held(parser) .. data:sub(expected - start + 1)
    buf = drain_stash(parser, buf, start + #data, pinfo.number)
    local entries, consumed = parse_kept(parser, buf, pinfo, ctx)
    parser.own = parser.deferred or consumed < #buf
    return entries
end

-- The client of a connection: the SYN sender, else the first sender.
local function note_client(pinfo, stream, flags)
    if clients[stream] == nil or (has_flag(flags, TCP_SYN) and not has_flag(flags, TCP_ACK)) then
        clients[stream] = endpoint_key(pinfo)
    end
end

local function note_tcp_end(pinfo, stream, flags)
    local tunnel = tunnels[stream]
    if tunnel == nil or tunnel.finished then return end
    local fin, rst = has_flag(flags, TCP_FIN), has_flag(flags, TCP_RST)
    if not (fin or rst) then return end
    tunnel.closed = tunnel.closed or {}
    tunnel.closed[endpoint_key(pinfo)] = true
    local closed = 0
    for _ in pairs(tunnel.closed) do closed = closed + 1 end
    if rst or closed >= 2 then return finish_tunnel(stream, tunnel, pinfo) end
end

-- First pass: records the end of a tunnel completes. Later passes: every
-- record of the frame, from the copies the first pass kept.
function mproxy_end.dissector(tvb, pinfo, tree)
    local entries
    local visited = pinfo.visited
    if visited and not first_pass.done then note_capture_end(pinfo) end
    if not visited then
        local number = pinfo.number
        local segment = field_segment(pinfo, number) or frame_segment(tvb, pinfo)
        if segment == nil then return end
        local names = name_packet(pinfo, number)
        local stream = names.stream
        local flags = segment.flags
        note_client(pinfo, stream, flags)
        if segment.first and deferred.number == number then
            deferred.number = -1
            if segment.captured > 0 then
                local payload = tvb(segment.first, segment.captured):tvb()
                if deferred.carrier == "tcp" then
                    dissect_tcp(payload, pinfo, tree, segment)
                else
                    dissect_own_ws(payload, pinfo, tree, segment)
                end
            end
        end
        local tunnel = tunnels[stream]
        if tunnel == nil then return end
        tunnel.last_number = number
        if tunnel.carrier == "tcp" then
            local parser = has_flag(flags, TCP_FIN) and parsers[names.key]
            if parser and parser.origin then
                parser.fin_off = (segment.seq + segment.len - parser.origin) % 4294967296
            end
            if tunnel.stashed then entries = append_entries(entries, note_late_segment(pinfo, stream, segment)) end
            entries = append_entries(entries, note_tcp_ack(pinfo, names, segment))
        elseif tunnel.carrier == "websocket" and not tunnel.after_http then
            local st = has_flag(flags, TCP_FIN) and ws_dirs[names.key]
            if st and st.origin then
                st.fin_off = (segment.seq + segment.len - st.origin) % 4294967296
            end
            entries = append_entries(entries, note_ws_ack(pinfo, names, segment))
        end
        entries = append_entries(entries, note_tcp_end(pinfo, stream, flags))
    else
        entries = {}
        for _, entry in ipairs(results[pinfo.number] or {}) do
            -- the raw-TCP dissector showed its own records (unless TCP did not call it this time)
            if not entry.from_dissector or tvb_shown.number ~= pinfo.number then entries[#entries + 1] = entry end
        end
        if continuations[pinfo.number] and #entries == 0 then
            show_continuation(tvb, pinfo, tree)
            pinfo.cols.protocol = "M-PROXY"
            pinfo.cols.info = "M-PROXY continuation"
        end
    end
    if entries == nil or #entries == 0 then return end
    local lines, bodies = show_entries(entries, pinfo, tree, tvb)
    set_columns(pinfo, lines)
    dissect_bodies(bodies, pinfo, tree, lines)
end

----------------------------------------------------------------------------
-- Registration
----------------------------------------------------------------------------

register_postdissector(mproxy_end)
DissectorTable.get("http.upgrade"):add("websocket", mproxy_ws)

mproxy:register_heuristic("tcp", heur_tcp)
mproxy:register_heuristic("ws", heur_ws)
DissectorTable.get("tcp.port"):add_for_decode_as(mproxy)

local registered_ports = ""
function mproxy.prefs_changed()
    local tcp_port = DissectorTable.get("tcp.port")
    if registered_ports ~= "" then tcp_port:remove(registered_ports, mproxy) end
    registered_ports = tostring(mproxy.prefs.tcp_ports)
    if registered_ports ~= "" then tcp_port:add(registered_ports, mproxy) end
end

----------------------------------------------------------------------------
-- Statistics: the tables of `mproxy stats` inside Wireshark
--
--   tshark -q -z mproxy,clients    tunneled connections (one row per client connection)
--   tshark -q -z mproxy,tunnels    TCP connections carrying M-PROXY
--   tshark -q -z mproxy,control    control requests matched to their replies
--   Wireshark: Statistics > M-PROXY > ...
--
-- A tap reads the records the dissector put in the tree (its fields, in tree
-- order: each record's fields follow its "mproxy.kind") and counts them as
-- mproxy_scapy/sessions.py and decoder.py do. Tunnels are numbered by
-- Wireshark's tcp.stream + 1, which is the decoder's numbering (TCP
-- connections in the order their first packet appears, from 1). Times are
-- seconds since the capture's first packet. This part only reads fields: it
-- knows nothing of the dissector's internals above.
----------------------------------------------------------------------------

local function register_statistics()
    local TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 1, 2, 4, 16
    local RECORD_FIELDS = {
        "mproxy.kind", "mproxy.src", "mproxy.client_id", "mproxy.length", "mproxy.hdrlen", "mproxy.body_len",
        "mproxy.service", "mproxy.servicename", "mproxy.name", "mproxy.serviceport", "mproxy.body",
        "mproxy.control.id", "mproxy.control.command", "mproxy.control.args",
    }
    local f = {}
    for _, name in ipairs(RECORD_FIELDS) do f[name] = Field.new(name) end
    local f_stream, f_flags, f_len = Field.new("tcp.stream"), Field.new("tcp.flags"), Field.new("tcp.len")
    local f_mproxy, f_ws = Field.new("mproxy"), Field.new("mproxy_ws")
    local f_upgrade, f_uri = Field.new("http.upgrade"), Field.new("http.request.uri")

    local function flag(flags, bit)
        return math.floor(flags / bit) % 2 == 1
    end

    -- JSON text -> Lua value (enough for control and error bodies); nil when it does not parse.
    local NULL = {}
    local json_value
    local function json_skip(s, i)
        return s:find("[^ \t\r\n]", i) or #s + 1
    end
    local ESCAPES = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }
    local function json_text(s, i)
        local out, j = {}, i + 1
        while j <= #s do
            local c = s:sub(j, j)
            if c == '"' then return table.concat(out), j + 1 end
            if c == "\\" then
                local e = s:sub(j + 1, j + 1)
                if e == "u" then
                    local code = tonumber(s:sub(j + 2, j + 5), 16)
                    if code == nil then return nil end
                    out[#out + 1] = code < 128 and string.char(code) or "?"
                    j = j + 6
                elseif ESCAPES[e] then
                    out[#out + 1] = ESCAPES[e]
                    j = j + 2
                else
                    return nil
                end
            else
                out[#out + 1] = c
                j = j + 1
            end
        end
        return nil
    end
    json_value = function(s, i, depth)
        if depth > 64 then return nil end
        i = json_skip(s, i)
        local c = s:sub(i, i)
        if c == '"' then return json_text(s, i) end
        if c == "{" or c == "[" then
            local object, out, close = c == "{", {}, c == "{" and "}" or "]"
            i = json_skip(s, i + 1)
            if s:sub(i, i) == close then return out, i + 1 end
            while true do
                local key
                if object then
                    if s:sub(i, i) ~= '"' then return nil end
                    key, i = json_text(s, i)
                    if key == nil then return nil end
                    i = json_skip(s, i)
                    if s:sub(i, i) ~= ":" then return nil end
                    i = i + 1
                end
                local value
                value, i = json_value(s, i, depth + 1)
                if i == nil then return nil end
                if object then out[key] = value else out[#out + 1] = value end
                i = json_skip(s, i)
                local sep = s:sub(i, i)
                if sep == close then return out, i + 1 end
                if sep ~= "," then return nil end
                i = json_skip(s, i + 1)
            end
        end
        if s:sub(i, i + 3) == "true" then return true, i + 4 end
        if s:sub(i, i + 4) == "false" then return false, i + 5 end
        if s:sub(i, i + 3) == "null" then return NULL, i + 4 end
        local number = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
        if number and number ~= "" and tonumber(number) then return tonumber(number), i + #number end
        return nil
    end
    local function json_parse(s)
        if s == nil then return nil end
        local value, after = json_value(s, 1, 0)
        if after == nil or json_skip(s, after) <= #s then return nil end
        return value
    end

    -- Python's str() of a JSON value, for the texts the decoder writes (outcomes, error messages).
    local function py_str(value)
        if type(value) == "boolean" then return value and "True" or "False" end
        if type(value) == "number" then
            if value == math.floor(value) and math.abs(value) < 2^53 then return string.format("%d", value) end
            return tostring(value)
        end
        if value == nil or value == NULL then return "None" end
        return tostring(value)
    end

    -- Control characters escaped (as the decoder's tables do), so a row stays one line.
    local NAMED = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r" }
    local function cell(text)
        if text == nil then return "" end
        return (tostring(text):gsub("[%z\1-\31\127]", function(c)
            return NAMED[c] or string.format("\\x%02x", c:byte())
        end))
    end

    -- "ip:port", "[ip]:port" for IPv6: the decoder's endpoint text.
    local function endpoint(address, port)
        local text = tostring(address)
        if text:find(":", 1, true) then text = "[" .. text .. "]" end
        return text .. ":" .. port
    end

    local function new_state()
        return { streams = {}, sessions = {}, live = {}, exchanges = {}, pending = {} }
    end

    -- One TCP connection (tcp.stream); a tunnel once M-PROXY shows in it.
    local function stream_of(state, pinfo, number, flags)
        local t = state.streams[number]
        if t then return t end
        local src, dst = endpoint(pinfo.src, pinfo.src_port), endpoint(pinfo.dst, pinfo.dst_port)
        -- the decoder's rule: the SYN sender; a SYN-ACK's receiver; else the first packet's sender
        local client, server = src, dst
        if flag(flags, TCP_SYN) and flag(flags, TCP_ACK) then client, server = dst, src end
        t = { id = number + 1, client = client, server = server, carrier = "tcp", path = nil,
              frames = { 0, 0 }, bytes = { 0, 0 }, fin = {}, closed = nil, first = nil, last = nil,
              first_payload = nil, is_tunnel = false }
        state.streams[number] = t
        return t
    end

    -- The fields of each record in the packet, in tree order.
    local function packet_records()
        local records, current = {}, nil
        for _, fi in ipairs({ all_field_infos() }) do
            local name = fi.name
            if name == "mproxy.kind" then
                current = { kind = fi.value }
                records[#records + 1] = current
            elseif current and f[name] and current[name] == nil then
                local value = fi.value
                if name == "mproxy.body" then value = value:raw() end
                current[name] = value
            end
        end
        return records
    end

    -- Bytes of the record that were in the capture (the decoder's stream byte count leaves lost ones out).
    local function present_bytes(r)
        local length = tonumber(r["mproxy.length"]) or 0
        if r.kind == "gap" then return 0 end
        if r.kind == "garbage" or r["mproxy.hdrlen"] == nil or r["mproxy.body_len"] == nil then return length end
        local present = 2 + tonumber(r["mproxy.hdrlen"]) + tonumber(r["mproxy.body_len"])
        return present < length and present or length
    end

    local function session_for(state, t, r, direction, time, number)
        local key = t.id .. "|" .. (r["mproxy.client_id"] or "")
        local s = state.live[key]
        local kind = r.kind
        if s == nil or (s.ended_by ~= nil and (kind == "connection" or (kind == "data" and not s.saw_connection)))
        then
            s = { tunnel = t.id, client = r["mproxy.client_id"] or "", inbound = direction, frames = { 0, 0 },
                  bytes = { 0, 0 }, first = time, last = time, service = "", servicename = "", name = "",
                  serviceport = nil, ended_by = nil, error = "", pauses = 0, resumes = 0, saw_connection = false }
            state.live[key] = s
            state.sessions[#state.sessions + 1] = s
        end
        s.frames[direction + 1] = s.frames[direction + 1] + 1
        s.last = time
        if kind == "data" then
            s.bytes[direction + 1] = s.bytes[direction + 1] + (tonumber(r["mproxy.body_len"]) or 0)
            if s.service == "" and r["mproxy.service"] then s.service = r["mproxy.service"] end
        elseif kind == "connection" then
            s.saw_connection = true
            s.inbound = direction
            s.servicename = r["mproxy.servicename"] or ""
        elseif (kind == "end" or kind == "error") and s.ended_by == nil then
            s.ended_by = kind
            if kind == "error" then
                local body = json_parse(r["mproxy.body"])
                s.error = type(body) == "table" and body.message ~= nil and py_str(body.message) or ""
            end
        elseif kind == "pause" then
            s.pauses = s.pauses + 1
        elseif kind == "resume" then
            s.resumes = s.resumes + 1
        end
        if s.name == "" and r["mproxy.name"] and r["mproxy.name"] ~= "" then s.name = r["mproxy.name"] end
        if s.serviceport == nil and r["mproxy.serviceport"] ~= nil then s.serviceport = r["mproxy.serviceport"] end
        return number
    end

    local function control(state, t, r, direction, time, number)
        local id = tonumber(r["mproxy.control.id"])
        if id == nil or id == 0 then return end
        if id > 0 then
            local e = { tunnel = t.id, id = id, command = r["mproxy.control.command"] or "", request = number,
                        time = time, outcome = "unanswered" }
            state.exchanges[#state.exchanges + 1] = e
            state.pending[t.id .. "|" .. direction .. "|" .. id] = e
            return
        end
        local key = t.id .. "|" .. (1 - direction) .. "|" .. -id
        local e = state.pending[key]
        if e == nil then return end
        state.pending[key] = nil
        e.reply, e.latency, e.outcome = number, time - e.time, "ok"
        local args = json_parse(r["mproxy.control.args"])
        local result = type(args) == "table" and args[1] or nil
        if type(result) == "table" and (result.code ~= nil or result.message ~= nil) then
            local code = result.code
            if code == nil or code == false or code == "" or code == 0 then code = result.message end
            e.outcome = py_str(code)
        end
    end

    -- The access_token query value hidden, as the decoder shows upgrade paths.
    local function redacted_path(path)
        path = path:gsub("^(access_token=)[^&#;]*", "%1" .. "<redacted>")
        return (path:gsub("([?&;]access_token=)[^&#;]*", "%1" .. "<redacted>"))
    end

    -- A WebSocket upgrade before the first M-PROXY record makes a WebSocket tunnel: seen by this
    -- dissector (plain ws://), or by Wireshark's HTTP dissector (wss:// decrypted with a key log).
    local function note_upgrade(t)
        local path
        local ws = f_ws()
        if ws then
            local ok, text = pcall(function() return ws.range:string() end)
            path = ok and text and text:match("^GET (%S+) HTTP/") or nil
        else
            local upgrade = f_upgrade()
            if upgrade == nil or tostring(upgrade.value):lower() ~= "websocket" then return end
            local uri = f_uri()
            path = uri and tostring(uri.value) or nil
        end
        t.carrier = "websocket"
        if path and t.path == nil then t.path = redacted_path(path) end
    end

    local function on_packet(state, pinfo)
        local stream, flags = f_stream(), f_flags()
        if stream == nil then return end
        flags = flags and flags.value or 0
        local t = stream_of(state, pinfo, stream.value, flags)
        local direction = endpoint(pinfo.src, pinfo.src_port) == t.client and 0 or 1
        if t.closed == nil then
            if flag(flags, TCP_RST) then
                t.closed = "rst"
            elseif flag(flags, TCP_FIN) then
                t.fin[direction] = true
                if t.fin[0] and t.fin[1] then t.closed = "fin" end
            end
        end
        if not t.is_tunnel then note_upgrade(t) end
        local time = pinfo.rel_ts
        local payload = f_len()
        if t.first_payload == nil and payload and payload.value > 0 then t.first_payload = time end
        if f_mproxy() == nil then return end
        if not t.is_tunnel then
            -- the decoder counts a raw tunnel from its first payload byte, which the heuristic may have
            -- claimed a few packets later; a WebSocket tunnel from its first message after the upgrade
            t.is_tunnel = true
            t.first = t.carrier == "tcp" and t.first_payload or time
        end
        t.last = time
        if f["mproxy.kind"]() == nil then return end
        for _, r in ipairs(packet_records()) do
            local d = (r["mproxy.src"] == t.client) and 0 or 1
            t.frames[d + 1] = t.frames[d + 1] + 1
            t.bytes[d + 1] = t.bytes[d + 1] + present_bytes(r)
            if r.kind == "control" then
                control(state, t, r, d, time, pinfo.number)
            elseif r.kind ~= "garbage" and r.kind ~= "gap" then
                session_for(state, t, r, d, time, pinfo.number)
            end
        end
    end

    -- A table as text: columns as wide as their widest cell, two spaces apart.
    local function table_text(title, header, rows)
        local widths = {}
        for i, h in ipairs(header) do widths[i] = #h end
        for _, row in ipairs(rows) do
            for i, c in ipairs(row) do if #c > widths[i] then widths[i] = #c end end
        end
        local function line(cells)
            local parts = {}
            for i, c in ipairs(cells) do
                parts[i] = i < #cells and c .. string.rep(" ", widths[i] - #c) or c
            end
            return table.concat(parts, "  ")
        end
        local out = { title, line(header) }
        for _, row in ipairs(rows) do out[#out + 1] = line(row) end
        return table.concat(out, "\n")
    end

    local function time_text(value)
        return value and string.format("%.6f", value) or ""
    end

    local function sorted_tunnels(state)
        local list = {}
        for _, t in pairs(state.streams) do if t.is_tunnel then list[#list + 1] = t end end
        table.sort(list, function(a, b) return a.id < b.id end)
        return list
    end

    local function clients_text(state)
        local rows = {}
        for _, s in ipairs(state.sessions) do
            local into, out = s.inbound + 1, 2 - s.inbound
            local ended = (s.ended_by or "open at capture end") .. (s.error ~= "" and " (" .. s.error .. ")" or "")
            rows[#rows + 1] = {
                tostring(s.tunnel), cell(s.client), cell(s.servicename ~= "" and s.servicename or s.service),
                cell(s.name), s.serviceport and string.format("%d", s.serviceport) or "",
                s.frames[into] .. "/" .. s.frames[out],
                string.format("%d/%d", s.bytes[into], s.bytes[out]), time_text(s.first),
                time_text(s.last - s.first), s.pauses .. "/" .. s.resumes, cell(ended) }
        end
        return table_text("M-PROXY tunneled connections",
            { "tunnel", "client", "service", "name", "port", "frames in/out", "bytes in/out", "start", "duration",
              "pause/resume", "ended by" }, rows)
    end

    local function tunnels_text(state)
        local rows = {}
        for _, t in ipairs(sorted_tunnels(state)) do
            local sessions = 0
            for _, s in ipairs(state.sessions) do if s.tunnel == t.id then sessions = sessions + 1 end end
            rows[#rows + 1] = {
                tostring(t.id), t.client .. " <-> " .. t.server,
                cell(t.carrier .. (t.path and " path=" .. t.path or "")), tostring(sessions),
                t.frames[1] .. "/" .. t.frames[2], string.format("%d/%d", t.bytes[1], t.bytes[2]),
                time_text(t.first), time_text(t.first and t.last - t.first or 0), t.closed or "capture_end" }
        end
        return table_text("M-PROXY tunnels",
            { "tunnel", "endpoints", "carrier", "sessions", "frames c->s/s->c", "bytes c->s/s->c", "start",
              "duration", "closed" }, rows)
    end

    local function control_text(state)
        local rows = {}
        for _, e in ipairs(state.exchanges) do
            rows[#rows + 1] = {
                tostring(e.tunnel), string.format("%d", e.id), cell(e.command), "#" .. e.request,
                e.reply and "#" .. e.reply or "", e.latency and time_text(e.latency) or "", cell(e.outcome) }
        end
        return table_text("M-PROXY control round-trips",
            { "tunnel", "id", "command", "request", "reply", "latency", "outcome" }, rows)
    end

    local TABLES = {
        { arg = "clients", menu = "Tunneled connections", text = clients_text },
        { arg = "tunnels", menu = "Tunnels", text = tunnels_text },
        { arg = "control", menu = "Control round-trips", text = control_text },
    }

    -- A tap over every TCP packet; show(text) is called with the table when Wireshark draws.
    local function start(render, show)
        local state = new_state()
        local tap = Listener.new("frame", "tcp")
        function tap.packet(pinfo) on_packet(state, pinfo) end
        function tap.reset() state = new_state() end
        function tap.draw() show(render(state)) end
        return tap
    end

    local RULE = string.rep("=", 80)
    for _, entry in ipairs(TABLES) do
        register_stat_cmd_arg("mproxy," .. entry.arg, function()
            start(entry.text, function(text) print(RULE .. "\n" .. text .. "\n" .. RULE) end)
        end)
    end
    if gui_enabled() then
        for _, entry in ipairs(TABLES) do
            register_menu("M-PROXY/" .. entry.menu, function()
                local window = TextWindow.new("M-PROXY: " .. entry.menu)
                local tap = start(entry.text, function(text) window:set(text) end)
                window:set_atclose(function() tap:remove() end)
                retap_packets()
            end, MENU_STAT_UNSORTED)
        end
    end
end

register_statistics()
