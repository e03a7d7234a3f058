// Drives dev-tee with the official @phala/dstack-sdk (DstackClient over the Unix socket): GetKey, GetQuote,
// Info, EmitEvent, and GetQuote again after the event. Prints one JSON line of what the SDK returned;
// tests/integration/test_dstack_sdks.py judges it. Input: PI_DSTACK_SOCKET, PI_REPORT_DATA (text),
// PI_EVENT_NAME, PI_EVENT_PAYLOAD (text).
import { DstackClient } from "@phala/dstack-sdk";

const client = new DstackClient(process.env.PI_DSTACK_SOCKET);
const hex = (u8) => Buffer.from(u8).toString("hex");

const k1 = await client.getKey("pi/js-sdk", "signing");
const k2 = await client.getKey("pi/js-sdk", "signing");
const k3 = await client.getKey("pi/js-sdk-other", "signing");
const quote = await client.getQuote(process.env.PI_REPORT_DATA);
const info = await client.info();
const version = await client.version();
await client.emitEvent(process.env.PI_EVENT_NAME, process.env.PI_EVENT_PAYLOAD);
const after = await client.getQuote(process.env.PI_REPORT_DATA);

console.log(
  JSON.stringify({
    key1: hex(k1.key),
    key2: hex(k2.key),
    key_other: hex(k3.key),
    signature_chain_length: k1.signature_chain.length,
    quote: quote.quote,
    event_log: quote.event_log,
    report_data: quote.report_data,
    replayed_rtmrs: quote.replayRtmrs(),
    info_app_compose: info.tcb_info.app_compose,
    info_compose_hash: info.compose_hash,
    info_tcb_event_log: info.tcb_info.event_log,
    version: version.version,
    after_quote: after.quote,
    after_event_log: after.event_log,
    after_replayed_rtmrs: after.replayRtmrs(),
  }),
);
