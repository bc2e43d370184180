// Drives the real proxy-packer 2.0.4 for the interoperability test.
// Usage: node proxy_packer_driver.js PACKAGE_DIR CASES.json > RESULT.json
// CASES.json: {"frames": [{call, meta, data, service}], "splits": [chunk sizes]}
// data is null, {"hex": "..."} (a Buffer) or {"json": value} (JSON.stringify'd by the packer).
'use strict';
var fs = require('fs');
var Packer = require(process.argv[2]);
var cases = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));

function dataOf(d) {
	if (d === null) { return null; }
	if (Object.prototype.hasOwnProperty.call(d, 'hex')) { return Buffer.from(d.hex, 'hex'); }
	return d.json;
}

var packed = [];
var stream = [];
cases.frames.forEach(function (c) {
	var meta = c.meta === null ? null : JSON.parse(JSON.stringify(c.meta));
	var data = dataOf(c.data);
	var buf = c.call === 'pack'
		? Packer.pack(meta, data, c.service)
		: Packer.packHeader(meta, data, c.service);
	packed.push(buf.toString('hex'));
	stream.push(buf);
	if (c.call === 'packHeader' && data) {
		// a relay writes the body after the header: the same bytes packHeader counted
		stream.push(Buffer.isBuffer(data) ? data : Buffer.from(JSON.stringify(data)));
	}
});

var delivered = [];
function recorder(handler) {
	return function (tun) {
		var copy = {};
		Object.keys(tun).forEach(function (k) {
			if (k === 'data') { return; }
			if (tun[k] !== undefined) { copy[k] = tun[k]; }
		});
		copy.data_hex = tun.data ? tun.data.toString('hex') : null;
		delivered.push({ handler: handler, tun: copy });
	};
}
var machine = Packer.create({
	onmessage: recorder('onmessage'),
	oncontrol: recorder('oncontrol'),
	onconnection: recorder('onconnection'),
	onerror: recorder('onerror'),
	onend: recorder('onend'),
	onpause: recorder('onpause'),
	onresume: recorder('onresume')
});
var whole = Buffer.concat(stream);
var at = 0;
var i = 0;
while (at < whole.length) {
	var size = cases.splits.length ? cases.splits[i % cases.splits.length] : whole.length;
	machine.fns.addChunk(whole.slice(at, at + size));
	at += size;
	i += 1;
}
process.stdout.write(JSON.stringify({ packed: packed, stream_hex: whole.toString('hex'), delivered: delivered }));
