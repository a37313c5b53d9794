// A poolsim client in Node.js from the protos alone (@grpc/grpc-js, @grpc/proto-loader):
// sign in, open the endpoint's Session stream, send a batch of calls, read the replies and
// events, then sign out on the same stream.
//
//   node examples/node/session.js 127.0.0.1:5061 sip:user0@contoso.com PASSWORD sip:user1@contoso.com
//
// Prints one JSON line per reply and per event; exits 0 once the stream ends after sign-out.
"use strict";
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [address, user, password, peer] = process.argv.slice(2);
const definition = protoLoader.loadSync("poolsim/v1/frontend.proto", {
  includeDirs: [path.join(__dirname, "..", "..", "protos")],
  keepCase: true, // field names as in the .proto (snake_case)
  longs: Number,
  enums: String,
  defaults: false,
  oneofs: true, // a oneof's set field is named in a virtual property (request / response / kind)
});
const { FrontEnd } = grpc.loadPackageDefinition(definition).poolsim.v1;
const client = new FrontEnd(address, grpc.credentials.createInsecure());

client.SignIn({ user_uri: user, password, device: "node" }, (err, signedIn) => {
  if (err) throw err; // a redirect is FAILED_PRECONDITION: sign in at err.metadata's home
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${signedIn.token}`);
  const session = client.Session(metadata);
  const pending = new Set([1, 2, 3]);
  session.on("data", (response) => {
    for (const reply of response.replies || []) {
      const answer = reply.error ? { error: reply.error } : { [reply.response]: reply[reply.response] };
      console.log(JSON.stringify({ reply: Number(reply.id), ...answer }));
      pending.delete(Number(reply.id));
      if (pending.size === 0) {
        session.write({ calls: [{ id: 4, sign_out: {} }] }); // the stream ends after it
        pending.add(4);
      }
    }
    for (const event of response.events || []) {
      console.log(JSON.stringify({ event: event.kind, [event.kind]: event[event.kind] }));
    }
  });
  session.on("error", (e) => {
    console.error(`session ended: ${grpc.status[e.code]} ${e.details}`);
    process.exit(1);
  });
  session.on("end", () => {
    console.log(JSON.stringify({ ended: "OK" }));
    client.close();
  });
  // Three calls in one message; each reply carries its id back.
  session.write({
    calls: [
      { id: 1, publish_presence: { availability: 6500, note: "from Node" } },
      { id: 2, create_conversation: { invitees: [peer], first_message: { body: "hello from Node" } } },
      { id: 3, get_presence: { user_uris: ["sip:nobody@contoso.com"] } }, // NOT_FOUND: an error reply
    ],
  });
});
