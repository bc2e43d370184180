'use strict';
// The relay of the reference-js capture: every frame it sends is made by proxy-packer 2.0.4
// itself (Packer.pack / Packer.packHeader), installed from the npm registry at record time.
//
//   node reference_relay.js <path to node_modules/proxy-packer> <truth output .ndjson>
//
// It prints one JSON line with its ports once listening, then takes JSON commands on stdin:
// {"flow": "pause"|"resume", "port": <browser port>}, {"drain": true} (answers "drained" once
// every browser connection is closed and its end frame written), {"quit": true}.
// Each frame it writes is logged to the truth file as it is written (sender-side truth).

const path = require('path');
const net = require('net');
const fs = require('fs');
const readline = require('readline');

const Packer = require(path.resolve(process.argv[2]));
const truthFd = fs.openSync(process.argv[3], 'w');
const PACK = 'proxy-packer@2.0.4 Packer.pack';
const PACK_HEADER = 'proxy-packer@2.0.4 Packer.packHeader';
const HELLO = [1, 'hello', 254, ['add_token', 'delete_token']];
const KNOWN_COMMANDS = new Set(['add_token', 'delete_token']);
const PORTS = { http: { service: 'http', name: '' }, echo: { service: 'tcp', name: 'echo.example.test' },
  closed: { service: 'tcp', name: 'closed.example.test' } };

let tunnel = null;
let offset = 0;
let writeCount = 0;
let count = 0;
let open = 0;
let drainWanted = false;
const clients = new Map();
const listeners = [];

function endpoint(host, port) {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function now() {
  return (performance.timeOrigin + performance.now()) / 1000;
}

// Write one frame (as one or several writes) and log it before it leaves.
function send(parts, packer) {
  const frame = Buffer.concat(parts);
  fs.writeSync(truthFd, JSON.stringify({
    direction: 'relay->device',
    src: endpoint(tunnel.localAddress, tunnel.localPort),
    dst: endpoint(tunnel.remoteAddress, tunnel.remotePort),
    carrier: 'tcp',
    offset: offset,
    frame_hex: frame.toString('hex'),
    packer: packer,
    write_index: writeCount,
    writes: parts.length,
    ts: now(),
  }) + '\n');
  offset += frame.length;
  writeCount += parts.length;
  parts.forEach(function (part) { tunnel.write(part); });
}

function copy(addr) {
  // packHeader sets meta.service to the message kind: never hand it the client's own object.
  return Object.assign({}, addr);
}

function hostOf(first) {
  const match = /\r\nhost:\s*([^\r\n:]+)/i.exec(first.toString('latin1'));
  return match ? match[1] : '';
}

function checkDrained() {
  if (drainWanted && open === 0) {
    drainWanted = false;
    process.stdout.write('"drained"\n');
  }
}

function startClient(sock, spec, first) {
  const addr = Packer.socketToAddr(sock);
  addr.service = spec.service;
  addr.name = spec.name || hostOf(first);
  count += 1;
  const client = { sock: sock, addr: addr, delivered: 0, errored: false, endStyle: count % 2 ? 'pack' : 'header' };
  clients.set(Packer.addrToId(addr), client);
  send([Packer.pack(copy(addr), null, 'connection')], PACK);
  function data(chunk) {
    send([Packer.packHeader(copy(addr), chunk), chunk], PACK_HEADER);
  }
  if (first) {
    data(first);
  }
  sock.on('data', data);
  sock.on('end', function () {
    if (!client.errored) {
      if (client.endStyle === 'pack') {
        send([Packer.pack(copy(addr), null, 'end')], PACK);
      } else {
        send([Packer.packHeader(copy(addr), null, 'end')], PACK_HEADER);
      }
    }
  });
}

function onBrowser(sock, spec) {
  open += 1;
  sock.on('error', function () {});
  sock.on('close', function () { open -= 1; checkDrained(); });
  if (spec.name) {
    startClient(sock, spec, null);
  } else {
    sock.once('data', function (first) { startClient(sock, spec, first); });
  }
}

function onControl(msg) {
  const request = JSON.parse(msg.data.toString());
  if (!Array.isArray(request) || request[0] <= 0) {
    return;
  }
  const reply = KNOWN_COMMANDS.has(request[1]) ? [-request[0], null]
    : [-request[0], { message: "unknown command '" + request[1] + "'", code: 'E_UNKNOWN_COMMAND' }];
  send([Packer.pack(null, reply, 'control')], PACK);
}

function clientOf(msg) {
  return clients.get(Packer.addrToId(msg));
}

const unpacker = Packer.create({
  oncontrol: onControl,
  onmessage: function (msg) {
    const client = clientOf(msg);
    if (client && msg.data) {
      client.delivered += msg.data.length;
      client.sock.write(msg.data);
    }
  },
  onend: function (msg) {
    const client = clientOf(msg);
    if (client) { client.sock.end(); }
  },
  onerror: function (msg) {
    const client = clientOf(msg);
    if (client) { client.errored = true; client.sock.destroy(); }
  },
  onpause: function () {},
  onresume: function () {},
});

const tunnelServer = net.createServer(function (sock) {
  tunnel = sock;
  sock.setNoDelay(true);
  sock.on('data', function (chunk) { unpacker.fns.addChunk(chunk); });
  sock.on('end', function () { sock.end(); });
  sock.on('close', function () { process.exit(0); });
  send([Packer.pack(null, HELLO, 'control')], PACK);
});

function listenBoth(name, done) {
  const v4 = net.createServer(function (sock) { onBrowser(sock, PORTS[name]); });
  v4.listen(0, '127.0.0.1', function () {
    const port = v4.address().port;
    const v6 = net.createServer(function (sock) { onBrowser(sock, PORTS[name]); });
    v6.listen(port, '::1', function () { done(port); });
    listeners.push(v4, v6);
  });
}

tunnelServer.listen(0, '127.0.0.1', function () {
  const ports = { tunnel: tunnelServer.address().port };
  const names = Object.keys(PORTS);
  (function next(i) {
    if (i === names.length) {
      process.stdout.write(JSON.stringify(ports) + '\n');
      return;
    }
    listenBoth(names[i], function (port) { ports[names[i]] = port; next(i + 1); });
  })(0);
});

readline.createInterface({ input: process.stdin }).on('line', function (line) {
  const command = JSON.parse(line);
  if (command.flow) {
    for (const client of clients.values()) {
      if (client.addr.port === command.port) {
        send([Packer.pack(copy(client.addr), Buffer.from(String(client.delivered)), command.flow)], PACK);
      }
    }
  } else if (command.drain) {
    drainWanted = true;
    checkDrained();
  } else if (command.quit) {
    listeners.forEach(function (server) { server.close(); });
    tunnelServer.close();
  }
});
