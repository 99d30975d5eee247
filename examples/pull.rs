//! Pull an image with progress, look it up by its short id, list the store,
//! remove the image and show that it is gone.
//!
//!     cargo run --release --example pull -- STORE IMAGE
use imgsvc::{BlockingService, ErrorKind, Options, Progress};

fn main() -> imgsvc::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, store, image] = args.as_slice() else {
        eprintln!("usage: pull STORE IMAGE");
        std::process::exit(2);
    };
    let svc = BlockingService::new(Options::new(store))?;

    let mut progress = |p: &Progress| {
        match p {
            Progress::Resolved { image, layers, total_bytes, .. } => {
                eprintln!("{image}: {layers} layers, {total_bytes} bytes")
            }
            Progress::LayerDone { digest, .. } | Progress::LayerSkipped { digest, .. } => eprintln!("  blob {digest}"),
            _ => {}
        }
        true // false cancels the pull
    };
    let id = match svc.pull(image, None, Some(&mut progress)) {
        Ok(id) => id,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            eprintln!("the registry has no {image}: {e}");
            std::process::exit(4);
        }
        Err(e) => return Err(e),
    };
    println!("pulled {id}");

    // Any name, the id, or an unambiguous id prefix finds the image.
    let short = &id["sha256:".len()..][..12];
    let status = svc.status(short, false)?.expect("just pulled");
    println!("{short}: tags {:?}, {} bytes", status.image.repo_tags, status.image.size);
    for i in svc.list(None)? {
        println!("{} {:?}", i.id, i.repo_digests);
    }

    svc.remove(&id)?; // removing what is absent succeeds too
    match svc.status(&id, false)? {
        None => println!("removed; status says: absent"),
        Some(s) => println!("still there: {s:?}"),
    }
    Ok(())
}
