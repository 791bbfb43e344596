process POSTPROCESS {
    tag "${meta.id}"
    label 'process_low'

    input:
    tuple val(meta), path(pred, stageAs: 'pred/*'), path(transforms, stageAs: 'transforms')
    path models, stageAs: 'model_?'

    output:
    // a refused case (bad input) writes refusal.csv instead of its outputs (GLIOCASCADE_REFUSAL_RECORD)
    tuple val(meta), path("${task.ext.prefix ?: meta.id}_seg.nii.gz"), emit: seg, optional: true
    tuple val(meta), path("${task.ext.prefix ?: meta.id}_seg_native.nii.gz"), emit: seg_native, optional: true
    tuple val(meta), path("provenance_postprocess.json"), emit: provenance, optional: true
    tuple val(meta), path("refusal.csv"), emit: refusal, optional: true
    tuple val("${task.process}"), val("gliocascade"), eval("gliocascade --version | sed 's/.* //'"), topic: versions, emit: versions_gliocascade

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def model_args = (models instanceof List ? models : [models]).collect { m -> "--model ${m}" }.join(' ')
    def native_arg = transforms ? "--native-transforms ${transforms}" : ''
    """
    gliocascade postprocess --pred ${pred} --out ${prefix}_seg.nii.gz --case-id ${meta.id} ${model_args} ${native_arg} ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}_seg.nii.gz ${prefix}_seg_native.nii.gz provenance_postprocess.json
    """
}
