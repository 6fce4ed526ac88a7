"""The eighth pass of issue 11 (tests/corpus/README.md): what unseen3/ (blind through the seventh
pass) was missed on, where the cause was a framework's own format or wording (read at its source,
cited in the rule) or a rule narrower than its own principle. Each excerpt is the real lines of
the unseen3/ file named beside it; healthy lines of the same surface beside each.

Lines go through the whole monitor (`scan`). Each positive fails with the rules before this pass
(b3065ed).
"""

# ruff: noqa: E501 (the real lines, as printed)

from __future__ import annotations

from supervisor.events import LogLine, Metric, Severity
from supervisor.parsing.parser import Parser
from supervisor.rules.stall import hang_text
from tests.conftest import scan


def loud(text: str) -> list[tuple[str, int]]:
    """(rule, line) of every report of warning or above."""
    return [(a.rule, a.lineno) for a in scan(text) if a.severity >= Severity.WARNING]


def metrics(line: str) -> list[Metric]:
    return [e for e in Parser().parse(LogLine(1, 0, 0, line), 0.0) if isinstance(e, Metric)]


# --- formats: NVIDIA's Tacotron 2 prints the iteration between the name and the value ------

# unseen3/897 (healthy): `Train loss {iteration} {loss:.6f} Grad Norm ...` read the iteration
# (0, 1, 2, ..., 64998) as the loss: two spikes on a healthy run.
TACOTRON2 = "\n".join(
    [
        "Epoch: 0",
        "Train loss 0 48.220909 Grad Norm 13.484264 5.71s/it",
        "Validation loss 0: 37.061010  ",
        "Saving model and optimizer state at iteration 0 to /data/models/ljspeech_models/waveglow_04242020/checkpoint_0",
        "Train loss 1 35.229748 Grad Norm 25.020286 3.79s/it",
        "Train loss 2 16.508032 Grad Norm 17.146819 3.99s/it",
        "Train loss 3 9.564240 Grad Norm 13.827114 3.99s/it",
        "Train loss 4 5.843519 Grad Norm 6.745416 3.99s/it",
        "Train loss 5 5.946629 Grad Norm 7.371412 4.03s/it",
        "Train loss 6 6.061152 Grad Norm 7.941638 4.01s/it",
        "Train loss 7 5.797815 Grad Norm 6.959098 3.97s/it",
        "….",
        "Validation loss 61000:  0.325403  ",
        "Saving model and optimizer state at iteration 61000 to /data/models/ljspeech_models/waveglow_04242020/checkpoint_61000",
        "…",
        "Validation loss 64000:  0.323265  ",
        "Saving model and optimizer state at iteration 64000 to /data/models/ljspeech_models/waveglow_04242020/checkpoint_64000",
        "…",
        "Train loss 64998 0.302735 Grad Norm 0.958112 4.36s/it",
        "Train loss 64999 0.314525 Grad Norm 0.615372 4.37s/it",
    ]
)


def test_tacotron2_train_loss_is_the_number_after_the_iteration() -> None:
    (m,) = metrics("Train loss 64998 0.302735 Grad Norm 0.958112 4.36s/it")
    assert (m.values["loss"], m.step) == (0.302735, 64998)
    (ev,) = [e for e in Parser().parse(LogLine(1, 0, 0, "Validation loss 61000:  0.325403  "), 0.0)
             if type(e).__name__ == "Eval"]  # fmt: skip
    assert ev.values == {"val_loss": 0.325403}


def test_a_healthy_tacotron2_log_is_quiet() -> None:
    assert loud(TACOTRON2) == []


def test_a_step_before_a_named_value_is_read_as_before() -> None:
    (m,) = metrics("step 12 loss 0.5 lr 0.001")
    assert (m.values["loss"], m.step) == (0.5, 12)


# --- formats: PaddleOCR pads a nan with `x` (`'{}: {:x<6f}'.format(k, v)`) --------------------

# unseen3/873: every step says `loss: nanxxx`.
PADDLE_NAN = "\n".join(
    [
        "[2023/10/09 10:49:12] ppocr INFO: epoch: [986/2000], global_step: 737800, lr: 0.000516, acc: 0.000000, norm_edit_dis: 0.000000, CTCLoss: nanxxx, SARLoss: nanxxx, loss: nanxxx, avg_reader_cost: 0.00013 s, avg_batch_cost: 0.30189 s, avg_samples: 128.0, ips: 423.98978 samples/s, eta: 2 days, 17:48:30",
    ]
)

# unseen3/875 (healthy PaddleOCR lines).
PADDLE_HEALTHY = "\n".join(
    [
        "2020-08-14 06:33:19,424-INFO: epoch: 17, iter: 48800, 'lr': 1e-04, 'total_loss': 1.122248, 'loss_shrink_maps': 0.61711, 'loss_threshold_maps': 0.379815, 'loss_binary_maps': 0.123497, time: 0.676",
        "2020-08-14 06:37:48,966-INFO: epoch: 17, iter: 49200, 'lr': 1e-04, 'total_loss': 1.132908, 'loss_shrink_maps': 0.618226, 'loss_threshold_maps': 0.384477, 'loss_binary_maps': 0.123703, time: 0.680",
        "2020-08-14 06:42:07,703-INFO: epoch: 17, iter: 49600, 'lr': 1e-04, 'total_loss': 1.261366, 'loss_shrink_maps': 0.715904, 'loss_threshold_maps': 0.41846, 'loss_binary_maps': 0.143215, time: 0.641",
    ]
)


def test_paddleocr_nanxxx_is_a_nan() -> None:
    assert ("nan", 1) in loud(PADDLE_NAN)


def test_paddleocr_finite_losses_are_quiet() -> None:
    assert loud(PADDLE_HEALTHY) == []


def test_a_word_starting_with_nan_is_still_no_nan() -> None:
    assert loud("model: nanxxxgpt loaded, loss: 1.25") == []


# --- formats: YOLOv5 up to v6.1 names its loss columns box, obj, cls --------------------------

# unseen3/878 (yolov5_obb adds theta): the four losses go nan at batch 2992.
YOLOV5_OBB = "\n".join(
    [
        "    Epoch   gpu_mem    box     obj        cls         theta    labels       img_size ",
        "     0/119     6.51G     0.086    0.1064   0.04166    0.1764       186      1024:  81%|████████  | 2990/3683 [1:03:00<14:31,  1.26s/it]",
        "     0/119     6.51G     0.086    0.1064   0.04166    0.1764       186      1024:  81%|████████  | 2991/3683 [1:03:00<14:32,  1.26s/it]",
        "     0/119     6.51G     0.086    0.1064   0.04166    0.1764        93      1024:  81%|████████  | 2991/3683 [1:03:01<14:32,  1.26s/it]",
        "     0/119     6.51G     0.086    0.1064   0.04166    0.1764        93      1024:  81%|████████  | 2992/3683 [1:03:01<14:46,  1.28s/it]",
        "     0/119     6.51G       nan       nan       nan       nan       220      1024:  81%|████████  | 2992/3683 [1:03:03<14:46,  1.28s/it]",
        "     0/119     6.51G       nan       nan       nan       nan       220      1024:  81%|████████▏ | 2993/3683 [1:03:03<14:36,  1.27s/it]",
        "     0/119     6.51G       nan       nan       nan       nan        88      1024:  81%|████████▏ | 2993/3683 [1:03:04<14:36,  1.27s/it]",
        "     0/119     6.51G       nan       nan       nan       nan        88      1024:  81%|████████▏ | 2994/3683 [1:03:04<14:12,  1.24s/it]",
    ]
)


def test_yolov5_box_obj_cls_columns_are_losses() -> None:
    assert loud(YOLOV5_OBB)[:1] == [("nan", 6)]


def test_yolov5_rows_before_the_nan_are_quiet() -> None:
    assert loud("\n".join(YOLOV5_OBB.splitlines()[:5])) == []


# --- wordings: the NCCL watchdog cut mid-word, CANN's stream synchronize timeout -------------

# unseen3/809: the watchdog line glued to a tqdm frame and cut inside "operation".
NCCL_CUT = "\n".join(
    [
        "[1761]   1%|▏         | 22/1752 [01:02<1:21:36,  2.83s/it]",
        "[1762]   1%|▏         | 23/1752 [01:05<1:23:14,  2.89s/it]",
        "[1763]   1%|▏         | 24/1752 [01:08<1:22:56,  2.88s/it][rank5]:[E602 11:17:52.185053341 ProcessGroupNCCL.cpp:632] [Rank 5] Watchdog caught collective operati",
    ]
)

# unseen3/825: torch_npu's EE1002.
ASCEND = "\n".join(
    [
        "W NPUStream.cpp:409] Warning: NPU warning, error code is 507046[Error]: ",
        "[Error]: In the specified timeout waiting event, all tasks in the specified stream are not completed. ",
        "        Rectify the fault based on the error information in the ascend log.",
        "EE1002: 2024-09-03-16:50:00.041.231 Stream synchronize timeout. rtDeviceSynchronize execute failed, reason=[stream sync timeout]",
        "        Possible Cause: 1. The timeout interval may be improperly set.",
        "        Solution: 1. Check whether the timeout interval is properly set. 2. Check whether the network is normal.",
        "        TraceBack (most recent call last):",
        "        wait for compute device to finish failed, runtime result = 507046.[FUNC:ReportCallError][FILE:log_inner.cpp][LINE:161]",
        " (function npuSynchronizeUsedDevices)",
    ]
)


def test_a_cut_nccl_watchdog_line_is_a_stall() -> None:
    assert ("stall", 3) in loud(NCCL_CUT)


def test_cann_stream_synchronize_timeout_is_a_stall() -> None:
    assert ("stall", 4) in loud(ASCEND)


def test_the_stream_synchronize_timeout_setting_is_no_stall() -> None:
    assert not hang_text("[INFO] ACL(1234): stream synchronize timeout = 3000ms")
    assert not hang_text("failed, stream synchronize timeout:3000, ret:507046.")


# --- the trainer's own spike guard: SRFBN's `Skip this batch! (Loss: ...)` --------------------

# unseen3/889: one normal batch loss (27.9), then every batch skipped at 101-120.
SRFBN = "\n".join(
    [
        "===> Training Epoch: [9/1000]...  Learning Rate: 0.000100",
        "Epoch: [9/1000]:  91%|█████████████████████████▍  | 447/493 [01:03<00:06,  7.08it/s, Batch Loss: 27.9309][Warning] Skip this batch! (Loss: 101.48338317871094)",
        "Epoch: [9/1000]:  91%|████████████████████████▌  | 448/493 [01:04<00:06,  7.13it/s, Batch Loss: 101.4834][Warning] Skip this batch! (Loss: 108.13626098632812)",
        "Epoch: [9/1000]:  91%|████████████████████████▌  | 449/493 [01:04<00:06,  7.19it/s, Batch Loss: 108.1363][Warning] Skip this batch! (Loss: 108.7495346069336)",
        "Epoch: [9/1000]:  91%|████████████████████████▋  | 450/493 [01:04<00:05,  7.19it/s, Batch Loss: 108.7495][Warning] Skip this batch! (Loss: 120.21204376220703)",
    ]
)


def test_batches_the_trainer_skipped_for_their_loss_are_a_spike_said_once() -> None:
    # The first skip is the guard doing its job (INFO, issue 11 Q4); the second in a row is
    # the spike the trainer keeps meeting.
    assert [r for r in loud(SRFBN) if r[0] == "spike"] == [("spike", 3)]


def test_skip_words_without_a_loss_are_quiet() -> None:
    assert loud("Skip this batch: empty annotations in image 12") == []


# --- a part of the loss at the absurd scale is judged by its median alone ---------------------

# unseen3/893: HiFi-GAN's `Gen Loss Total` 94-196, then 64922832 at step 30.
HIFIGAN = "\n".join(
    [
        "Epoch: 1",
        "Steps : 0, Gen Loss Total : 101.349, Mel-Spec. Error : 2.058, s/b : 585.139",
        "Steps : 5, Gen Loss Total : 135.118, Mel-Spec. Error : 2.176, s/b : 0.496",
        "Steps : 10, Gen Loss Total : 106.757, Mel-Spec. Error : 1.938, s/b : 0.435",
        "Steps : 15, Gen Loss Total : 94.055, Mel-Spec. Error : 1.701, s/b : 0.435",
        "Steps : 20, Gen Loss Total : 141.385, Mel-Spec. Error : 1.857, s/b : 0.433",
        "Steps : 25, Gen Loss Total : 196.452, Mel-Spec. Error : 3.813, s/b : 0.443",
        "Steps : 30, Gen Loss Total : 64922832.000, Mel-Spec. Error : 1.813, s/b : 0.454",
        "Steps : 35, Gen Loss Total : 199.692, Mel-Spec. Error : 3.854, s/b : 0.455",
    ]
)


def test_a_part_at_the_absurd_scale_blowing_up_is_a_spike() -> None:
    assert ("spike", 8) in loud(HIFIGAN)


def test_a_part_at_the_absurd_scale_doubling_is_quiet() -> None:
    assert loud("\n".join(HIFIGAN.splitlines()[:7])) == []


# --- formats: NVIDIA WaveGlow's `"{}:\\t{:.9f}".format(iteration, reduced_loss)` ----------------

# unseen3/866: a negative log-likelihood near -5.4, then 40490.18 at iteration 123892.
WAVEGLOW = "\n".join(
    [
        "123873: -5.480178833",
        "123874: -5.352289200",
        "123875: -5.298225403",
        "123876: -5.460500240",
        "123877: -5.547176361",
        "123878: -5.597653866",
        "123879: -5.451864243",
        "123880: -5.445433617",
        "123881: -5.494832516",
        "123882: -5.272130013",
        "123883: -5.312953949",
        "123884: -5.550226212",
        "123885: -5.573468208",
        "123886: -5.405485153",
        "123887: -4.718036175",
        "123888: -5.176541805",
        "123889: -4.795463085",
        "123890: -4.772330284",
        "123891: -4.845523357",
        "123892: 40490.179687500",
        "123893: -3.482588530",
        "123894: -2.216503620",
        "123895: -1.672664404",
        "123896: -1.454238176",
    ]
)


def test_waveglow_iteration_loss_lines_are_read_and_the_blow_up_found() -> None:
    (m,) = metrics("123892: 40490.179687500")
    assert (m.values["loss"], m.step) == (40490.1796875, 123892)
    assert ("spike", 20) in loud(WAVEGLOW)


def test_a_negative_loss_wandering_is_quiet() -> None:
    assert loud("\n".join(WAVEGLOW.splitlines()[:19])) == []


def test_other_number_colon_number_lines_are_no_loss() -> None:
    assert metrics("2024: 3.5") == []
    assert metrics("12: 0.123") == []


# --- formats: TensorFlowTTS ends each metric line with a period ------------------------------

# unseen3/894: one healthy record at step 1200, then the adversarial loss at 273810 at step
# 1400 (its line glued to the tqdm bar).
TFTTS = "\n".join(
    [
        "[WARNING] (Step: 1200) train_adversarial_loss = 0.7722.",
        "[WARNING] (Step: 1200) train_subband_spectral_convergence_loss = 1.3400.",
        "[WARNING] (Step: 1200) train_subband_log_magnitude_loss = 0.7954.",
        "[WARNING] (Step: 1200) train_fullband_spectral_convergence_loss = 1.1050.",
        "[WARNING] (Step: 1200) train_fullband_log_magnitude_loss = 0.9838.",
        "[WARNING] (Step: 1200) train_gen_loss = 4.0427.",
        "[WARNING] (Step: 1200) train_real_loss = 0.1281.",
        "[WARNING] (Step: 1200) train_fake_loss = 0.0849.",
        "[WARNING] (Step: 1200) train_dis_loss = 0.2130.",
        "[train]:   0%|                                                                                                                                                   | 1400/4000000 [11:45<538:42:22,  2.06it/s][WARNING] (Step: 1400) train_adversarial_loss = 273810.7500.",
        "[WARNING] (Step: 1400) train_subband_spectral_convergence_loss = 222.8679.",
    ]
)


def test_a_value_ending_its_sentence_is_read() -> None:
    (m,) = metrics("[WARNING] (Step: 1200) train_gen_loss = 4.0427.")
    assert (m.values, m.step) == ({"train_gen_loss": 4.0427}, 1200)
    assert ("spike", 10) in loud(TFTTS)


def test_a_version_number_is_still_no_value() -> None:
    assert metrics("loaded checkpoint of version 1.2.3. loss 0.5") == metrics("loss 0.5")


# --- a log that prints only the loss's parts: the parts are all there is ----------------------

# unseen3/886 (CAP-VSTNet): lap_loss 1.3-1.9, then 37.4 (style_loss 0.5-1.2, then 9.0); no total.
PARTS_ONLY = "\n".join(
    [
        "Iteration: 00161490/00170000  content_loss:0.0000  lap_loss:1.5283  rec_loss:0.1308  style_loss:0.4994  loss_tmp:0.7239  loss_tmp_GT:0.0898",
        "Iteration: 00161500/00170000  content_loss:0.0000  lap_loss:1.4131  rec_loss:0.1164  style_loss:1.0087  loss_tmp:0.6687  loss_tmp_GT:0.0719",
        "Iteration: 00161510/00170000  content_loss:0.0000  lap_loss:1.3814  rec_loss:0.1189  style_loss:0.6020  loss_tmp:0.8305  loss_tmp_GT:0.0644",
        "Iteration: 00161520/00170000  content_loss:0.0000  lap_loss:1.2963  rec_loss:0.1918  style_loss:0.7768  loss_tmp:0.6962  loss_tmp_GT:0.0777",
        "Iteration: 00161530/00170000  content_loss:0.0000  lap_loss:1.3077  rec_loss:0.1180  style_loss:1.2366  loss_tmp:0.6606  loss_tmp_GT:0.0754",
        "Iteration: 00161540/00170000  content_loss:0.0000  lap_loss:1.8840  rec_loss:0.1963  style_loss:0.6856  loss_tmp:0.8398  loss_tmp_GT:0.0790",
        "Iteration: 00161550/00170000  content_loss:0.0000  lap_loss:37.4161  rec_loss:0.4983  style_loss:8.9974  loss_tmp:3.0548  loss_tmp_GT:0.0554",
        "Iteration: 00161560/00170000  content_loss:0.0000  lap_loss:0.9423  rec_loss:0.1765  style_loss:0.5690  loss_tmp:0.9694  loss_tmp_GT:0.0606",
        "Iteration: 00161570/00170000  content_loss:0.0000  lap_loss:0.8936  rec_loss:0.1570  style_loss:0.8383  loss_tmp:0.6511  loss_tmp_GT:0.0804",
    ]
)


def test_a_part_blowing_up_in_a_log_without_a_total_is_a_spike() -> None:
    assert loud(PARTS_ONLY) == [("spike", 7)]


def test_parts_noise_in_a_log_without_a_total_is_quiet() -> None:
    assert loud("\n".join(PARTS_ONLY.splitlines()[:6])) == []


def test_a_part_jumping_beside_a_total_still_needs_absurd() -> None:
    lines = [line + "  loss:3.0000" for line in PARTS_ONLY.splitlines()[2:11]]
    assert [r for r in loud("\n".join(lines)) if r[0] == "spike"] == []
