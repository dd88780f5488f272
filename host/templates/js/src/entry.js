// The component's entry point: `npm run build` starts here. No need to edit it.
// The SDK's component glue comes first, so that TextEncoder, TextDecoder and
// console exist by the time src/plugin.js (and whatever it imports) runs.
import { exportPlugin } from "wasmhook-sdk/component";
import { handle as plugin } from "./plugin.js";

export const handle = exportPlugin(plugin);
