"""Seed a study with N stored trials (and 3 epochs each) straight into the control plane's SQLite
database, for measuring the study page at scale. Usage: seed_trials.py DB SPEC_FROM_STUDY_ID N.
Prints the new study's id."""
import json, random, sqlite3, sys, time

db, src, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
con = sqlite3.connect(db, timeout=30)
dataset_id, spec = con.execute("SELECT dataset_id, spec FROM studies WHERE id = ?", (src,)).fetchone()
now = int(time.time() * 1000)
cur = con.execute(
    "INSERT INTO studies (name, dataset_id, state, spec, max_trials, max_minutes, created_at, finished_at) VALUES (?, ?, 'complete', ?, ?, NULL, ?, ?)",
    (f"seeded {n} trials", dataset_id, spec, n, now - n * 1000, now),
)
study = cur.lastrowid
rng = random.Random(1)
trials, epochs = [], []
for i in range(n):
    lr = 10 ** rng.uniform(-4, -2)
    params = {"learning_rate": lr, "batch_size": rng.choice([8, 16, 32, 64, 128]), "epochs": 3, "image_size": rng.randint(16, 64),
              "optimizer": rng.choice(["adam", "adamw", "sgd"]), "conv_blocks": rng.randint(1, 4), "channels": rng.randint(8, 64), "dropout": rng.uniform(0, 0.5)}
    state = "complete" if rng.random() < 0.85 else ("pruned" if rng.random() < 0.7 else "failed")
    acc = min(0.99, max(0.3, 0.95 - abs(-3 - __import__("math").log10(lr)) * 0.2 + rng.gauss(0, 0.05)))
    t0 = now - (n - i) * 1000
    done = state == "complete"
    trials.append((study, i, state, json.dumps(params), "{}", "w1", "cpu", acc if done else None, acc - 0.02 if done else None,
                   rng.uniform(5, 60) if done else None, rng.uniform(0.1, 3) if done else None, rng.randint(1000, 500000) if done else None,
                   3 if done else 1, "seeded failure" if state == "failed" else None, t0, t0 + 50, t0 + 900))
for row in trials:
    cur = con.execute(
        "INSERT INTO trials (study_id, number, state, params, config, worker_id, device, val_accuracy, test_accuracy, train_seconds, inference_ms, parameter_count, epochs_completed, error, created_at, started_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        row,
    )
    tid = cur.lastrowid
    final = row[7] if row[7] is not None else 0.5
    for e in range(1, (row[12] or 1) + 1):
        epochs.append((tid, e, 1.0 / e, 1.1 / e, final * (0.7 + 0.1 * e), e * 3.0))
con.executemany("INSERT INTO trial_epochs (trial_id, epoch, train_loss, val_loss, val_accuracy, elapsed_seconds) VALUES (?,?,?,?,?,?)", epochs)
con.commit()
print(study)
