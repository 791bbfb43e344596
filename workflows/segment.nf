/*
 * Segment cases already in BraTS space: predict -> postprocess (BraTS and native space) ->
 * evaluate (metrics with ground truth, volumes without) -> cohort report. A case that a step
 * refuses stops there and is listed in the report with its reason.
 */
include { PREDICT     } from '../modules/local/predict'
include { POSTPROCESS } from '../modules/local/postprocess'
include { EVALUATE    } from '../modules/local/evaluate'
include { REPORT      } from '../modules/local/report'

workflow GLIOCASCADE_SEGMENT {
    take:
    cases       // [meta, t1, t1ce, t2, flair, brain mask or []]
    transforms  // [meta, transforms folder or [] ]
    references  // [meta, ground-truth labels or [] ]
    models      // value: list of model folders (an ensemble)
    refused     // [meta, refusal.csv] of cases refused before segmentation (convert, preprocess)

    main:
    PREDICT(cases.combine(models.map { ms -> [ms] }))
    POSTPROCESS(PREDICT.out.pred.join(transforms), models)
    // evaluate gets both label maps and compares the one on the reference's grid (native or BraTS)
    labels = POSTPROCESS.out.seg
        .join(POSTPROCESS.out.seg_native, remainder: true)
        .filter { row -> row[1] != null }
        .map { meta, seg, seg_native -> [meta, seg, seg_native ?: []] }
    EVALUATE(labels.join(references))

    failures = refused
        .mix(PREDICT.out.refusal, POSTPROCESS.out.refusal, EVALUATE.out.refusal)
        .map { _meta, record -> record }
        .collectFile(name: 'failures.csv', keepHeader: true, skip: 1, sort: true)
        .ifEmpty([])
    REPORT(EVALUATE.out.metrics.map { _meta, csv -> csv }.collect().ifEmpty([]), failures)

    emit:
    seg     = POSTPROCESS.out.seg
    metrics = EVALUATE.out.metrics
    report  = REPORT.out.html
}
