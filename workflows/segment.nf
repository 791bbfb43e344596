/*
 * Segment cases already in BraTS space: predict -> postprocess (BraTS and native space) ->
 * evaluate (metrics with ground truth, volumes without) -> cohort report.
 */
include { PREDICT     } from '../modules/local/predict'
include { POSTPROCESS } from '../modules/local/postprocess'
include { EVALUATE    } from '../modules/local/evaluate'
include { REPORT      } from '../modules/local/report'

workflow GLIOCASCADE_SEGMENT {
    take:
    cases       // [meta, case folder in BraTS space]
    transforms  // [meta, transforms folder or [] ]
    references  // [meta, ground-truth labels or [] ]
    models      // value: list of model folders (an ensemble)

    main:
    PREDICT(cases.combine(models.map { ms -> [ms] }))
    POSTPROCESS(PREDICT.out.pred.join(transforms), models)
    EVALUATE(POSTPROCESS.out.seg.join(references))
    REPORT(EVALUATE.out.metrics.map { _meta, csv -> csv }.collect())

    emit:
    seg     = POSTPROCESS.out.seg
    metrics = EVALUATE.out.metrics
    report  = REPORT.out.html
}
