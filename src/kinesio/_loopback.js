// Preloaded with `node -r _loopback.js` by kinesio.local.kinesis_mock: makes every server in
// the process listen on 127.0.0.1 only. kinesis-mock binds 0.0.0.0 and has no setting to
// change that.
"use strict";
const net = require("net");

const HOST = "127.0.0.1";
const listen = net.Server.prototype.listen;

net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (first !== null && typeof first === "object" && !Array.isArray(first)) {
    // listen(options[, backlog][, callback])
    if (first.path === undefined) {
      args[0] = Object.assign({}, first, { host: HOST });
    }
  } else if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    // listen(port[, host][, backlog][, callback]): replace or insert the host
    if (typeof args[1] === "string") {
      args[1] = HOST;
    } else {
      args.splice(1, 0, HOST);
    }
  }
  return listen.apply(this, args);
};
