// mproxy conform adapter for the real proxy-packer under Node.js (the line protocol of docs/CONFORMANCE.md).
// Usage: mproxy conform --packer "node examples/conform/proxy_packer.js [PATH/TO/proxy-packer]"
// Without a path, require('proxy-packer') is used (npm install proxy-packer@2.0.4).
'use strict';
var readline = require('readline');
var Packer = require(process.argv[2] || 'proxy-packer');

var HANDLERS = ['onmessage', 'oncontrol', 'onconnection', 'onerror', 'onend', 'onpause', 'onresume'];

function body(request) {
	if (!Object.prototype.hasOwnProperty.call(request, 'body')) { return undefined; }
	var b = request.body;
	if (b === null) { return null; }
	if (Object.prototype.hasOwnProperty.call(b, 'base64')) { return Buffer.from(b.base64, 'base64'); }
	return b.json;
}

function unpack(chunks) {
	var events = [];
	var handlers = {};
	HANDLERS.forEach(function (name) {
		handlers[name] = function (tun) {
			var fields = {};
			Object.keys(tun).forEach(function (key) {
				if (key !== 'data' && tun[key] !== undefined) { fields[key] = tun[key]; }
			});
			fields.data = tun.data ? tun.data.toString('base64') : null;
			events.push({ handler: name, fields: fields });
		};
	});
	var machine = Packer.create(handlers);
	chunks.forEach(function (chunk) { machine.fns.addChunk(Buffer.from(chunk, 'base64')); });
	return events;
}

function answer(request) {
	var service = Object.prototype.hasOwnProperty.call(request, 'service') ? request.service : undefined;
	switch (request.op) {
	case 'pack':
		return { wire: Packer.pack(request.meta, body(request), service).toString('base64') };
	case 'packHeader':
		return { wire: Packer.packHeader(request.meta, body(request), service).toString('base64') };
	case 'unpack':
		return { events: unpack(request.chunks) };
	default:
		return { error: 'unknown op ' + request.op };
	}
}

readline.createInterface({ input: process.stdin, crlfDelay: Infinity }).on('line', function (line) {
	var reply;
	try {
		reply = answer(JSON.parse(line));
	} catch (err) {
		reply = { error: String(err && err.message || err) };
	}
	process.stdout.write(JSON.stringify(reply) + '\n');
});
