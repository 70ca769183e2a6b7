//! Replica checkpoints (`picsou local` restarts): what a replica writes is what a restart reads.

use picsou_core::StreamStart;
use picsou_runtime::load::{Checkpointer, read_checkpoint};

#[test]
fn a_checkpoint_reads_back_what_was_written_last() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint");
    assert_eq!(read_checkpoint(&path).unwrap(), StreamStart::default(), "no file: a fresh start");
    let c = Checkpointer::new(&path);
    assert_eq!(read_checkpoint(&path).unwrap(), StreamStart::default(), "opened, never written: a fresh start");
    c.write(StreamStart { transmit: 1_000_000, receive: 7 });
    c.write(StreamStart { transmit: 12, receive: u64::MAX });
    assert_eq!(read_checkpoint(&path).unwrap(), StreamStart { transmit: 12, receive: u64::MAX });
}

#[test]
fn a_restarted_replica_keeps_its_checkpoint_until_it_writes_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint");
    Checkpointer::new(&path).write(StreamStart { transmit: 5, receive: 6 });
    // The restarted incarnation opens the same file: the old record stays readable.
    let c = Checkpointer::new(&path);
    assert_eq!(read_checkpoint(&path).unwrap(), StreamStart { transmit: 5, receive: 6 });
    c.write(StreamStart { transmit: 9, receive: 10 });
    assert_eq!(read_checkpoint(&path).unwrap(), StreamStart { transmit: 9, receive: 10 });
}

#[test]
fn a_longer_file_from_another_writer_is_cut_to_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint");
    std::fs::write(&path, format!("{} {}\n{}\n", 1, 2, "x".repeat(100))).unwrap();
    Checkpointer::new(&path).write(StreamStart { transmit: 3, receive: 4 });
    assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{:020} {:020}\n", 3, 4));
    assert_eq!(read_checkpoint(&path).unwrap(), StreamStart { transmit: 3, receive: 4 });
}

#[test]
fn garbage_is_an_error_not_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint");
    std::fs::write(&path, "not a checkpoint").unwrap();
    assert_eq!(read_checkpoint(&path).unwrap_err().kind(), std::io::ErrorKind::InvalidData);
}
