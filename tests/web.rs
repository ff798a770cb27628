//! The sandbox's chat page in a real headless browser (Debian's `chromium`
//! driven through `chromedriver` with fantoccini), against the sandbox and a
//! worker from `worker_support`; plus the page's access rules over plain
//! HTTP.
//!
//! The browser sends traffic to loopback only: background networking,
//! component updates, sync, DNS prefetch and QUIC are off, and the driver
//! is given the browser's path so nothing is downloaded.
//!
//! Screenshots go to a temporary directory, or to `$TELEGATE_SCREENSHOT_DIR`
//! when set (`TELEGATE_SCREENSHOT_DIR=docs cargo test --test web` refreshes
//! the README's).

mod worker_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client as Browser, ClientBuilder, Locator};
use serde_json::{Value, json};
use telegate::config::Secret;
use telegate::sandbox::telegram::BOT_ID;
use telegate::sandbox::telegram::{AccountId, NewUser, UserMessage};
use telegate::sandbox::web::{self, RunningWeb, WebError, WebOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{Instant, sleep};
use worker_support::{INTERACTIVE, PATIENCE, Pace, World};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The page of a world's sandbox, on a free loopback port.
struct Page {
    web: RunningWeb,
    stop: watch::Sender<bool>,
}

impl Page {
    async fn start(world: &World, public: bool, token: Option<Secret>) -> Result<Page, WebError> {
        let control = world.sandbox.control();
        let (stop, stopped) = watch::channel(false);
        let options = WebOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            public,
            token,
        };
        let socket = world.dir.path().join("telegate.sock");
        let web = web::start(options, control, socket, stopped).await?;
        Ok(Page { web, stop })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.web.local_addr())
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(PATIENCE, self.web.join())
            .await
            .expect("the page stops, open live streams and all")
            .unwrap();
    }
}

/// chromedriver on a loopback port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the browser test needs Debian's chromium and chromium-driver \
                 (apt-get install -y chromium chromium-driver; .ci/run installs them)"
            );
        }
        // A free port: bound, then released for chromedriver.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        Driver { child, port }
    }

    /// A headless Chromium session, once the driver answers.
    async fn browser(&self, profile: &Path) -> Browser {
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dns-prefetch-disable",
            "--disable-dev-shm-usage",
            "--window-size=1400,900",
        ]
        .into_iter()
        .map(String::from)
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{}", self.port);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(browser) => return browser,
                Err(error) => {
                    assert!(Instant::now() < deadline, "no browser session: {error}");
                    sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for the element at `css` and returns it.
async fn element(browser: &Browser, css: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
}

/// Waits for the element at `css` and clicks it. The page re-renders its
/// lists as updates arrive, so an element found a moment ago may be gone
/// (stale) by the click: find it again rather than fail.
async fn click(browser: &Browser, css: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match element(browser, css).await.click().await {
            Ok(_) => return,
            Err(e) if e.is_stale_element_reference() && Instant::now() < deadline => {
                sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot click {css}: {e}"),
        }
    }
}

/// Waits until the text of `css` satisfies `ok`; returns it.
async fn text_until(browser: &Browser, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = match browser.find(Locator::Css(css)).await {
            Ok(found) => found.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if ok(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{css} never showed what was expected; it shows {text:?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

async fn save_screenshot(browser: &Browser, dir: &Path, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
    std::fs::write(dir.join(name), png).unwrap();
}

fn screenshot_dir(scratch: &Path) -> PathBuf {
    match std::env::var_os("TELEGATE_SCREENSHOT_DIR") {
        Some(dir) => Path::new(env!("CARGO_MANIFEST_DIR")).join(dir),
        None => scratch.to_owned(),
    }
}

/// A user who has written /start to the bot, like `telegate sandbox`'s demo user.
fn demo_user(world: &World) -> AccountId {
    let telegram = world.sandbox.telegram();
    let user = telegram
        .create_user(NewUser {
            id: None,
            first_name: "Ada".into(),
            username: Some("ada_demo".into()),
            lang_code: None,
        })
        .unwrap()
        .id;
    telegram
        .user_sends(user, BOT_ID, UserMessage::Text("/start".into()), None)
        .unwrap();
    user
}

/// A sandbox with its worker and page, and a browser on the page.
struct Session {
    world: World,
    user: AccountId,
    page: Page,
    browser: Browser,
    shots: PathBuf,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

impl Session {
    async fn start(config: &str) -> Session {
        let world = World::start_with(Pace::Unlimited, config).await;
        let user = demo_user(&world);
        let page = Page::start(&world, false, None).await.unwrap();
        let driver = Driver::start();
        let profile = tempfile::tempdir().unwrap();
        let browser = driver.browser(profile.path()).await;
        let shots = screenshot_dir(profile.path());
        browser.goto(&page.url("/")).await.unwrap();
        text_until(&browser, "#messages .msg.from-user .text", |t| {
            t == "/start"
        })
        .await;
        Session {
            world,
            user,
            page,
            browser,
            shots,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Stops the page while the browser still has it open: its live
    /// stream must not hold up the shutdown.
    async fn stop(self) {
        self.page.stop().await;
        self.browser.close().await.unwrap();
        self.world.stop().await;
    }
}

async fn enqueue(world: &World, body: Value) {
    let answer = world
        .client
        .post(&format!("{INTERACTIVE}?wait=30"), &[], body.to_string())
        .await
        .unwrap();
    assert_eq!(answer.status, 201, "{:?}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_chats_with_the_bot_in_a_browser() {
    // The stored answer comes at the consumer's deadline: long enough to see
    // the spinner.
    let session = Session::start("[callbacks]\ndeadline_ms = 2000\n").await;
    let Session {
        world,
        user,
        browser,
        shots,
        ..
    } = &session;
    let (world, user, browser, shots) = (world, *user, browser, shots.as_path());

    // The demo user's chat.
    text_until(browser, ".chat-head", |t| t.contains("Ada")).await;

    // An inline keyboard sent through the socket API arrives live.
    enqueue(
        world,
        json!({
            "destination_user_id": user.to_string(),
            "telegram_interactive_message": {
                "type": "reply_buttons",
                "text": "Did your package arrive?",
                "reply_markup": {"inline_keyboard": [
                    [{"text": "Yes", "callback_data": "yes", "answer": {"text": "Great, enjoy it!"}},
                     {"text": "No", "callback_data": "no", "answer": {"text": "Sorry! We'll look into it.", "alert": true}}],
                    [{"text": "Track it", "url": "https://example.com/track"},
                     {"text": "Later", "callback_data": "later"}]
                ]}
            }
        }),
    )
    .await;
    let yes = element(browser, ".ikb[data-data='yes']").await;
    let track = element(browser, "a.ikb").await;
    assert_eq!(
        track.attr("href").await.unwrap().as_deref(),
        Some("https://example.com/track")
    );

    // A click spins while it waits for the bot: a button without a stored
    // answer waits for a consumer until the deadline.
    click(browser, ".ikb[data-data='later']").await;
    element(browser, ".ikb.pending[data-data='later']").await;
    // A stored answer comes at once, shown as a toast.
    yes.click().await.unwrap();
    text_until(browser, "#toast.show", |t| t == "Great, enjoy it!").await;
    save_screenshot(browser, shots, "sandbox-web-chat.png").await;
    assert!(
        browser
            .find(Locator::Css(".ikb.pending[data-data='yes']"))
            .await
            .is_err(),
        "the spinner stops with the answer"
    );
    // The unanswered click ends too (empty answer at the deadline).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while browser.find(Locator::Css(".ikb.pending")).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the spinner never stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An alert answer is a dialog.
    click(browser, ".ikb[data-data='no']").await;
    text_until(browser, "dialog#alert[open] #alert-text", |t| {
        t == "Sorry! We'll look into it."
    })
    .await;
    click(browser, "#alert-ok").await;

    // A reply keyboard replaces the input; its contact button sends a contact.
    enqueue(
        world,
        json!({
            "destination_user_id": user.to_string(),
            "telegram_interactive_message": {
                "type": "reply_keyboard",
                "text": "How should we reach you?",
                "reply_markup": {"keyboard": [
                    [{"text": "Share my phone", "request_contact": true}, {"text": "Send my location", "request_location": true}],
                    [{"text": "Email me"}]
                ], "one_time_keyboard": true, "input_field_placeholder": "Pick one"}
            }
        }),
    )
    .await;
    let share = element(browser, ".rkb[data-type='request_contact']").await;
    assert!(
        !element(browser, "#text")
            .await
            .is_displayed()
            .await
            .unwrap(),
        "the keyboard replaces the input"
    );
    save_screenshot(browser, shots, "sandbox-web-keyboard.png").await;
    share.click().await.unwrap();
    text_until(
        browser,
        "#messages .msg.from-user:last-child .media.contact",
        |t| t.contains("Ada"),
    )
    .await;
    // One-time: the keyboard is gone and the input is back.
    let deadline = Instant::now() + PATIENCE;
    while browser.find(Locator::Css(".rkb")).await.is_ok() {
        assert!(Instant::now() < deadline, "the one-time keyboard never hid");
        sleep(Duration::from_millis(50)).await;
    }
    assert!(
        element(browser, "#text")
            .await
            .is_displayed()
            .await
            .unwrap()
    );

    // A force reply focuses the input with its placeholder.
    enqueue(
        world,
        json!({
            "destination_user_id": user.to_string(),
            "telegram_interactive_message": {
                "type": "highlight_reply",
                "text": "What is your order number?",
                "reply_markup": {"force_reply": true, "input_field_placeholder": "Order number"}
            }
        }),
    )
    .await;
    let input = element(browser, "#text").await;
    let deadline = Instant::now() + PATIENCE;
    while input.attr("placeholder").await.unwrap().as_deref() != Some("Order number") {
        assert!(
            Instant::now() < deadline,
            "the force reply's placeholder never showed"
        );
        sleep(Duration::from_millis(50)).await;
    }
    let focused = browser
        .execute("return document.activeElement.id", vec![])
        .await
        .unwrap();
    assert_eq!(focused, json!("text"), "the force reply focuses the input");

    // Typing and sending: the text reaches the worker as an event.
    input.send_keys("order 4711").await.unwrap();
    click(browser, "#send-button").await;
    text_until(browser, "#worker .events", |t| t.contains("order 4711")).await;
    let events = world.client.get("/api/v1/events?after=0").await.unwrap();
    let events = String::from_utf8_lossy(&events.body).into_owned();
    let text_event = events
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|e| e.to_string().contains("order 4711"))
        .expect("the typed text is an event");
    assert!(text_event.to_string().contains("\"text\""), "{text_event}");
    // And it answers the force reply.
    let chat = world.sandbox.telegram().chat(user, BOT_ID).unwrap();
    let last = chat["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["text"], "order 4711");
    assert!(last["reply_to"].is_i64(), "{last}");
    text_until(browser, "#worker .jobs", |t| t.contains("sent")).await;
    save_screenshot(browser, shots, "sandbox-web-events.png").await;
    session.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_composer_sends_files_locations_start_payloads_and_new_users() {
    let session = Session::start("").await;
    let browser = &session.browser;
    let last = "#messages .msg.from-user:last-child";

    // A document "upload": the file's name, type and size become the message.
    let file = session._profile.path().join("receipt.pdf");
    std::fs::write(&file, vec![b'%'; 3000]).unwrap();
    let picker = element(browser, "#file").await;
    picker.send_keys(&file.display().to_string()).await.unwrap();
    text_until(browser, &format!("{last} .media.document"), |t| {
        t.contains("receipt.pdf") && t.contains("application/pdf") && t.contains("2.9 KB")
    })
    .await;

    // Its bytes are the sandbox's own, behind the placeholder's link.
    let link = element(browser, &format!("{last} .media.document a.download"))
        .await
        .attr("href")
        .await
        .unwrap()
        .expect("a download link");
    let addr = session.page.web.local_addr();
    let (status, head, body) = http_raw(addr, &get(&link, &addr.to_string(), "")).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("receipt.pdf"), "{head}");
    let chat = session
        .world
        .sandbox
        .telegram()
        .chat(session.user, BOT_ID)
        .unwrap();
    let media = &chat["messages"].as_array().unwrap().last().unwrap()["media"];
    let id = media["id"].as_i64().unwrap();
    assert_eq!(body, telegate::sandbox::telegram::file_content(id, 0, 3000));

    // A location from the location form.
    click(browser, "#location").await;
    let form = element(browser, "#where").await;
    let latitude = form.find(Locator::Css("[name=latitude]")).await.unwrap();
    latitude.clear().await.unwrap();
    latitude.send_keys("48.8584").await.unwrap();
    click(browser, "#where button").await;
    text_until(browser, &format!("{last} .media.location"), |t| {
        t.contains("48.8584, 13.405")
    })
    .await;

    // /start with a payload.
    let payload = element(browser, "#start [name=payload]").await;
    payload.send_keys("ref-42").await.unwrap();
    click(browser, "#start button").await;
    text_until(browser, &format!("{last} .text"), |t| t == "/start ref-42").await;
    let chat = session
        .world
        .sandbox
        .telegram()
        .chat(session.user, BOT_ID)
        .unwrap();
    let kinds: Vec<&str> = chat["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["media"]["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["document", "location"]);

    // A fault switch: the counters and the toast say it happened.
    click(browser, "[data-fault=limits-off]").await;
    text_until(browser, "#toast.show", |t| t == "Flood limits off").await;
    assert!(!session.world.sandbox.telegram().limits_enabled());

    // The black hole: the bot's connections go unanswered until it is lifted.
    click(browser, "[data-fault=blackhole-on]").await;
    text_until(browser, "#toast.show", |t| t.contains("black hole")).await;
    assert!(session.world.sandbox.faults().blackholed());
    text_until(browser, "#stats .setting", |t| t.contains("blackhole")).await;
    click(browser, "[data-fault=blackhole-off]").await;
    text_until(browser, "#toast.show", |t| t.contains("answered again")).await;
    assert!(!session.world.sandbox.faults().blackholed());

    // A new user: the page switches to their empty chat, and the list has both.
    let form = element(browser, "#new-user").await;
    form.find(Locator::Css("[name=first_name]"))
        .await
        .unwrap()
        .send_keys("Grace")
        .await
        .unwrap();
    click(browser, "#new-user button").await;
    text_until(browser, ".chat-head", |t| t.contains("Grace")).await;
    text_until(browser, "#users", |t| {
        t.contains("Ada") && t.contains("Grace")
    })
    .await;
    text_until(browser, "#users .user.selected", |t| t.contains("Grace")).await;
    assert_eq!(session.world.sandbox.telegram().users(BOT_ID).len(), 2);
    session.stop().await;
}

/// A second bot and a group, in the browser: the person picks which bot a
/// private chat is with, creates a group with another user and the bot,
/// posts in it, sees the other member's and the bot's messages labelled by
/// sender, and clicks the bot's button in the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_picks_a_bot_and_chats_in_a_group_in_a_browser() {
    let session = Session::start("").await;
    let (world, ada, browser) = (&session.world, session.user, &session.browser);
    let telegram = world.sandbox.telegram().clone();
    let bot2 = telegram.ensure_bots(2)[1];
    let grace = telegram
        .create_user(NewUser {
            id: None,
            first_name: "Grace".into(),
            username: None,
            lang_code: None,
        })
        .unwrap()
        .id;
    browser
        .goto(&session.page.url(&format!("/?user={ada}")))
        .await
        .unwrap();

    // Two bots: the private chat is with the one picked.
    click(browser, &format!("#chats .chat-link[data-bot='{bot2}']")).await;
    text_until(browser, ".chat-head", |t| t.contains("Sandbox Bot 2")).await;
    element(browser, "#text")
        .await
        .send_keys("hi bot two")
        .await
        .unwrap();
    click(browser, "#send-button").await;
    text_until(browser, "#messages .msg.from-user:last-child .text", |t| {
        t == "hi bot two"
    })
    .await;
    let texts = |bot| -> Vec<String> {
        telegram.chat(ada, bot).unwrap()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["text"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(texts(bot2), ["hi bot two"]);
    assert_eq!(texts(BOT_ID), ["/start"]);

    // A group with Grace and the first bot, created from the page.
    click(browser, &format!("#chats .chat-link[data-bot='{BOT_ID}']")).await;
    text_until(browser, ".chat-head", |t| t.contains("Sandbox Bot")).await;
    element(browser, "#new-group [name=title]")
        .await
        .send_keys("Team")
        .await
        .unwrap();
    click(
        browser,
        &format!("#new-group input[name=member][value='{grace}']"),
    )
    .await;
    click(browser, "#new-group button[type=submit]").await;
    text_until(browser, ".chat-head", |t| t.contains("Team")).await;
    text_until(browser, "#chats .chat-link.group.selected", |t| {
        t.contains("Team")
    })
    .await;
    text_until(browser, "#messages .service", |t| {
        t.contains("created the group")
    })
    .await;
    text_until(browser, "#messages .service:nth-child(2)", |t| {
        t == "Sandbox Bot joined"
    })
    .await;
    let groups = telegram.groups(BOT_ID);
    let group = groups[0]["id"].as_i64().unwrap();
    assert_eq!(groups[0]["bot"], "member", "{groups:?}");

    // The person posts as Ada; Grace posts; each labelled by sender.
    element(browser, "#text")
        .await
        .send_keys("hello team")
        .await
        .unwrap();
    click(browser, "#send-button").await;
    text_until(browser, "#messages .msg.from-user:last-child .text", |t| {
        t == "hello team"
    })
    .await;
    telegram
        .group_sends(
            group,
            grace,
            UserMessage::Text("hi from Grace".into()),
            None,
        )
        .unwrap();
    text_until(browser, "#messages .msg.from-bot:last-child", |t| {
        t.contains("Grace") && t.contains("hi from Grace")
    })
    .await;
    let chat = telegram.group_chat(group, BOT_ID).unwrap();
    let senders: Vec<(i64, &str)> = chat["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["service"].is_null())
        .map(|m| {
            (
                m["sender_id"].as_i64().unwrap(),
                m["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(senders, [(ada, "hello team"), (grace, "hi from Grace")]);

    // The bot posts a keyboard in the group; a click gets its stored answer.
    enqueue(
        world,
        json!({
            "destination_user_id": group.to_string(),
            "telegram_interactive_message": {
                "type": "reply_buttons",
                "text": "Stand-up at ten?",
                "reply_markup": {"inline_keyboard": [[
                    {"text": "I'm in", "callback_data": "in", "answer": {"text": "See you there"}}
                ]]}
            }
        }),
    )
    .await;
    text_until(
        browser,
        "#messages .msg:last-child .sender.bot-sender",
        |t| t == "Sandbox Bot",
    )
    .await;
    click(browser, ".ikb[data-data='in']").await;
    text_until(browser, "#toast.show", |t| t == "See you there").await;
    save_screenshot(browser, &session.shots, "sandbox-web-group.png").await;
    session.stop().await;
}

#[test]
fn the_sandbox_command_refuses_a_page_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let run = |web: &str| {
        Command::new(env!("CARGO_BIN_EXE_telegate"))
            .arg("--state-dir")
            .arg(dir.path())
            .args(["sandbox", "--dc-only", "--web", web])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let refused = run("0.0.0.0:0");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("loopback") && stderr.contains("--web-public"),
        "{stderr}"
    );
    let refused = run("not-an-address");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--web must be a socket address"),
        "{stderr}"
    );
}

/// One HTTP/1.1 request over TCP: status, head and body bytes.
async fn http_raw(addr: SocketAddr, request: &str) -> (u16, String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(answer.len());
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let body = answer.get(split + 4..).unwrap_or_default().to_vec();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, body)
}

/// [`http_raw`] with the body as text.
async fn http(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let (status, head, body) = http_raw(addr, request).await;
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str, host: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n")
}

#[tokio::test]
async fn the_page_is_loopback_only_and_a_public_page_needs_its_token() {
    let world = World::start(Pace::Unlimited).await;

    // Refused before binding: a non-loopback address without --web-public,
    // and --web-public without a token.
    let error = web::check_bind("0.0.0.0:8080".parse().unwrap(), false, None).unwrap_err();
    assert!(error.to_string().contains("loopback"), "{error}");
    let error = web::check_bind("0.0.0.0:8080".parse().unwrap(), true, None).unwrap_err();
    assert!(error.to_string().contains("token"), "{error}");

    // A loopback page answers a loopback Host, and only that.
    let page = Page::start(&world, false, None).await.unwrap();
    let addr = page.web.local_addr();
    let (status, _, body) = http(addr, &get("/", &addr.to_string(), "")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("telegate sandbox"));
    let (status, _, _) = http(
        addr,
        &get("/", &format!("evil.example:{}", addr.port()), ""),
    )
    .await;
    assert_eq!(status, 403, "a rebound DNS name is refused");
    // A change without the page's header (a cross-site form) is refused.
    let post = format!(
        "POST /control/users HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: text/plain\r\nContent-Length: 20\r\n\r\n{{\"first_name\":\"Eve\"}}"
    );
    let (status, _, _) = http(addr, &post).await;
    assert_eq!(status, 403);
    assert!(world.sandbox.telegram().users(BOT_ID).is_empty());
    page.stop().await;

    // A public page needs its token: missing or wrong → 401; in the query →
    // a cookie and a redirect; the cookie or a bearer header → the page.
    let token = "a-token-of-enough-length";
    let page = Page::start(&world, true, Some(Secret::new(token)))
        .await
        .unwrap();
    let addr = page.web.local_addr();
    let host = addr.to_string();
    let (status, _, _) = http(addr, &get("/", &host, "")).await;
    assert_eq!(status, 401);
    let (status, _, _) = http(addr, &get("/?token=wrong-token-guess", &host, "")).await;
    assert_eq!(status, 401);
    let (status, _, _) = http(addr, &get("/live", &host, "")).await;
    assert_eq!(status, 401, "the live stream needs the token too");
    let (status, head, _) = http(addr, &get(&format!("/?user=5&token={token}"), &host, "")).await;
    assert_eq!(status, 303);
    assert!(head.contains(&format!("telegate_web={token}")), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("location: /?user=5"),
        "{head}"
    );
    let cookie = format!("Cookie: telegate_web={token}\r\n");
    let (status, _, body) = http(addr, &get("/", &host, &cookie)).await;
    assert_eq!(status, 200, "{body}");
    let bearer = format!("Authorization: Bearer {token}\r\n");
    let (status, _, _) = http(addr, &get("/control/users", "anything.example", &bearer)).await;
    assert_eq!(status, 200, "a public page takes any Host with the token");
    page.stop().await;
    world.stop().await;
}
