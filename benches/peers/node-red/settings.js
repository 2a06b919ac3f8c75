// Node-RED settings for the live-stream benchmark (cargo bench --bench live).
// The harness copies this file and flows.json into a fresh user dir and sets
// BENCH_NR_PORT (HTTP + WebSocket port) and BENCH_MQTT_PORT (the bench's
// Mosquitto, substituted into flows.json as ${BENCH_MQTT_PORT}).
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: parseInt(process.env.BENCH_NR_PORT || "1880", 10),
    flowFile: "flows.json",
    flowFilePretty: true,
    credentialSecret: false,
    // No editor and no admin API: only the flow's WebSocket listener is served.
    httpAdminRoot: false,
    disableEditor: true,
    httpNodeRoot: "/",
    logging: {
        console: { level: "warn", metrics: false, audit: false }
    },
    diagnostics: { enabled: false, ui: false },
    telemetry: { enabled: false },
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
    contextStorage: { default: { module: "memory" } },
    functionExternalModules: false,
    functionGlobalContext: {},
    exportGlobalContextKeys: false,
    editorTheme: { projects: { enabled: false }, tours: false }
};
