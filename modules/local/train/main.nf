process TRAIN {
    tag "${meta.id}"
    label 'process_gpu'

    input:
    // every file of the training rows, each in its own numbered folder, and the samplesheet naming them
    // there (label convention and brain mask per row: train reads them as `train --samplesheet` does)
    tuple val(meta), path(files, stageAs: 'data/f?????/*'), path(samplesheet)
    // a JSON network config (--config FILE), staged so the task sees it wherever it runs; [] for a
    // built-in one. meta.config names what train reads: the built-in name, or config/<file name>
    path(config_file, stageAs: 'config/*')

    output:
    tuple val(meta), path("${task.ext.prefix ?: meta.id}", type: 'dir'), emit: model
    tuple val(meta), path("${task.ext.prefix ?: meta.id}/model.json"), emit: card
    tuple val(meta), path("${task.ext.prefix ?: meta.id}/train_log.csv"), emit: log
    tuple val("${task.process}"), val("gliocascade"), eval("gliocascade --version | sed 's/.* //'"), topic: versions, emit: versions_gliocascade

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    gliocascade train --samplesheet ${samplesheet} --out ${prefix} --config ${meta.config} --fold ${meta.fold} --folds ${meta.folds} --seed ${meta.seed} ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix}/snapshots
    echo '{"split": {"train": [], "val": []}}' > ${prefix}/model.json
    touch ${prefix}/checkpoint.pt ${prefix}/train_log.csv
    """
}
