use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match orders::Config::from_source(&kit::config::Env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("orders: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return kit::health::probe(config.common.listen_addr);
    }
    kit::telemetry::init_logging(&config.common.log_level, config.common.log_format);
    let app = match orders::Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "orders failed to start");
            return ExitCode::FAILURE;
        }
    };
    match app.run(kit::server::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "orders stopped with an error");
            ExitCode::FAILURE
        }
    }
}
